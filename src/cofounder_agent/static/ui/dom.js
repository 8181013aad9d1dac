// Small DOM helpers. Text from the API (prompts are user text) only ever becomes textContent.

import { describe } from './api.js';

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

// h('button', { class: 'x', dataset: { jobId }, onclick: fn }, 'label', child, ...)
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function seconds(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return '';
  const s = Number(value);
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 90) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export const eta = (value) => (value === null || value === undefined ? '' : `about ${seconds(value)} left`);

export function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export const shortId = (id) => String(id).slice(0, 8);

let noticeTimer = null;

// One line at the top for what happened elsewhere (an image moved, a failed call).
export function notice(message, kind = 'info') {
  const line = $('#notice');
  line.textContent = message;
  line.dataset.kind = kind;
  line.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { line.hidden = true; }, kind === 'error' ? 15000 : 5000);
}

// Fill a <dl> with [label, value, field] rows, skipping empty values.
export function facts(list, rows) {
  list.replaceChildren();
  for (const [label, value, field] of rows) {
    if (value === null || value === undefined || value === '') continue;
    list.append(h('dt', {}, label), h('dd', { dataset: { field } }, String(value)));
  }
}

export function isAbort(error) {
  return error?.name === 'AbortError';
}

// The confirmation dialog; resolves true when the user chose the destructive button.
export function confirm(text, action = 'Delete') {
  const dialog = $('#confirm-dialog');
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = action;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

// An event handler that reports its failure on the notice line instead of the console.
export function guard(action) {
  return async (event) => {
    try {
      await action(event);
    } catch (error) {
      if (!isAbort(error)) notice(describe(error), 'error');
    }
  };
}

// Runs `refresh` now and then every `everyMs` while shown; returns the show/hide switch. The
// next run is timed from the end of the last, so a slow server is never asked twice at once.
export function poller(refresh, everyMs) {
  let timer = null;
  async function tick() {
    try {
      await refresh();
    } catch (error) {
      if (!isAbort(error)) notice(describe(error), 'error');
    }
    if (timer !== null) timer = setTimeout(tick, everyMs);
  }
  return (visible) => {
    if (visible && timer === null) {
      timer = 0;
      tick();
    } else if (!visible && timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  };
}
