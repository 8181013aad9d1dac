// The job form and the live job cards: submit to POST /v1/jobs, follow each job's event stream
// (stage, step, progress bar, ETA, intermediates), cancel, and send finished images to the grid.

import * as api from './api.js';
import { $, eta, guard, h, notice, seconds, shortId } from './dom.js';
import { TERMINAL, followJob } from './events.js';
import { showBoard } from './gallery.js';
import { openImage } from './image.js';

const NUMBERS = ['width', 'height', 'steps', 'guidance_scale', 'seed', 'num_images'];
const SAVED = 'cofounder_agent.jobs'; // this tab's job ids, so a reload redraws their cards
// Each stream holds one of the browser's six connections per origin: more jobs than this poll.
const MAX_STREAMS = 2;
const cards = new Map();
let streams = 0;

// Only the fields the user filled: the server's defaults (or the named recipe's) fill the rest.
function jobBody(form) {
  const fields = form.elements;
  const body = { prompt: fields.prompt.value.trim() };
  if (fields.negative_prompt.value.trim()) body.negative_prompt = fields.negative_prompt.value.trim();
  for (const name of NUMBERS) {
    if (fields[name].value !== '') body[name] = Number(fields[name].value);
  }
  if (fields.scheduler.value) body.scheduler = fields.scheduler.value;
  if (fields.refiner_mode.value) body.refiner = { mode: fields.refiner_mode.value };
  if (fields.recipe.value) body.recipe = fields.recipe.value;
  if (fields.board_id.value) body.board_id = fields.board_id.value;
  if (fields.stream_intermediates.checked) body.stream_intermediates = true;
  return body;
}

function formError(form, message, field = null) {
  const line = $('#form-error');
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  line.hidden = !message;
  line.textContent = message ?? '';
  // The API names the field ("refiner.mode"); the form's inputs use flat names.
  const input = field && form.elements[field.replace('.', '_')];
  if (input instanceof HTMLElement) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }
}

function checkForm(form) {
  for (const input of form.querySelectorAll('input, textarea, select')) {
    if (input.checkValidity()) continue;
    const label = input.closest('label')?.firstChild?.textContent.trim() ?? input.name;
    formError(form, `${label}: ${input.validationMessage}`, input.name);
    return false;
  }
  return true;
}

async function submit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  if (!checkForm(form)) return;
  formError(form, null);
  const button = form.querySelector('[type=submit]');
  button.disabled = true;
  try {
    const job = await api.json('POST', 'v1/jobs', { body: jobBody(form) });
    addCard(job, true);
    remember(job.id);
    notice(`Job ${shortId(job.id)} queued.`);
  } catch (error) {
    formError(form, api.describe(error), error.field);
  } finally {
    button.disabled = false;
  }
}

function remember(id, keep = true) {
  const ids = JSON.parse(sessionStorage.getItem(SAVED) ?? '[]').filter((saved) => saved !== id);
  if (keep) ids.unshift(id);
  sessionStorage.setItem(SAVED, JSON.stringify(ids.slice(0, 20)));
}

function thumb(imageId) {
  const img = h('img', { alt: '' });
  const button = h('button', { type: 'button', class: 'tile small', dataset: { imageId },
    'aria-label': `Image ${shortId(imageId)}`, onclick: (event) => openImage(imageId, event.currentTarget) }, img);
  api.pictureUrl(imageId, 'thumbnail').then((url) => {
    img.src = url;
    button.dataset.loaded = 'true';
    img.addEventListener('load', () => URL.revokeObjectURL(url), { once: true });
  }, () => { button.dataset.loaded = 'failed'; });
  return h('li', {}, button);
}

function addCard(job, fresh) {
  const progress = h('progress', { max: 1, value: 0, dataset: { stepsSeen: 0 } });
  const el = h('article', { class: 'card', dataset: { jobId: job.id, status: job.status } },
    h('h4', {}, `Job ${shortId(job.id)} `, h('span', { class: 'status', dataset: { field: 'status' }, 'aria-live': 'polite' })),
    h('p', { class: 'prompt' }, job.recipe?.prompt ?? ''),
    h('p', { dataset: { field: 'stage' } }),
    progress,
    h('ul', { class: 'stage-log', dataset: { field: 'stages' } }),
    h('p', { class: 'error', dataset: { field: 'error' }, hidden: true }),
    h('ul', { class: 'strip', dataset: { field: 'intermediates' }, 'aria-label': 'Intermediate pictures' }),
    h('ul', { class: 'strip', dataset: { field: 'images' }, 'aria-label': 'Images' }),
    h('div', { class: 'actions' },
      h('button', { type: 'button', dataset: { action: 'cancel' }, onclick: guard(() => cancel(job.id)) }, 'Cancel'),
      h('button', { type: 'button', dataset: { action: 'show' }, hidden: true,
        onclick: guard(() => showInGallery(job)) }, 'Show in gallery'),
      h('button', { type: 'button', dataset: { action: 'dismiss' }, onclick: () => dismiss(job.id) }, 'Dismiss')));
  const card = { job, el, progress, abort: new AbortController(), stepsSeen: 0 };
  cards.set(job.id, card);
  $('#job-cards').prepend(el);
  if (fresh) el.scrollIntoView({ block: 'nearest' });
  draw(card, job);
  if (!TERMINAL.has(job.status)) follow(card);
  return card;
}

function field(card, name) {
  return card.el.querySelector(`[data-field="${name}"]`);
}

function setStatus(card, status) {
  card.el.dataset.status = status;
  field(card, 'status').textContent = status;
  if (TERMINAL.has(status)) card.el.querySelector('[data-action=cancel]').hidden = true;
}

// Redraw from a JobPublic (after submit, a reload, a cancel, or when polling).
function draw(card, job) {
  setStatus(card, job.status);
  if (job.status === 'queued') {
    field(card, 'stage').textContent = job.queue_position ? `Waiting: ${job.queue_position} ahead` : 'Waiting: next';
  } else if (job.status === 'running' && job.stage) {
    field(card, 'stage').textContent = `${job.stage} · step ${job.step}/${job.total_steps} ${eta(job.eta_s)}`.trim();
  }
  card.progress.value = job.status === 'succeeded' ? 1 : job.progress;
  if (TERMINAL.has(job.status)) finish(card, job.status, job.error, job.image_ids);
}

function onEvent(card, { type, data }) {
  if (type === 'queued') draw(card, { ...card.job, status: 'queued', queue_position: data.position });
  else if (type === 'running' || type === 'started') setStatus(card, 'running');
  else if (type === 'stage') field(card, 'stage').textContent = `${data.stage} · step 0/${data.total}`;
  else if (type === 'step') {
    card.progress.value = data.progress;
    card.progress.dataset.stepsSeen = String(++card.stepsSeen);
    field(card, 'stage').textContent = `${data.stage} · step ${data.step}/${data.total} ${eta(data.eta_s)}`.trim();
  } else if (type === 'image' && data.intermediate) field(card, 'intermediates').append(thumb(data.image_id));
  else if (type === 'image_deleted') field(card, 'intermediates').querySelector(`[data-image-id="${data.image_id}"]`)?.closest('li').remove();
  else if (type === 'stage_done') {
    field(card, 'stages').append(h('li', {}, `${data.stage}: ${data.outcome ?? ''} ${seconds(data.seconds)}`.trim()));
  } else if (TERMINAL.has(type)) finish(card, type, data.error, data.image_ids);
}

function finish(card, status, error, imageIds = []) {
  if (card.done) return;
  card.done = true;
  setStatus(card, status);
  if (status === 'succeeded') card.progress.value = 1;
  field(card, 'stage').textContent = status === 'succeeded' ? `Done: ${imageIds.length} image(s)` : status;
  if (error) {
    field(card, 'error').textContent = error;
    field(card, 'error').hidden = false;
  }
  field(card, 'images').replaceChildren(...imageIds.map(thumb));
  card.el.querySelector('[data-action=show]').hidden = imageIds.length === 0;
  if (imageIds.length) window.dispatchEvent(new CustomEvent('imageschanged'));
}

async function follow(card) {
  try {
    if (streams < MAX_STREAMS) {
      streams += 1;
      try {
        await followJob(card.job.id, (event) => onEvent(card, event), card.abort.signal);
      } finally {
        streams -= 1;
      }
    } else {
      await poll(card);
    }
  } catch (error) {
    if (card.abort.signal.aborted) return;
    if (error instanceof api.ApiError && error.status === 404) setStatus(card, 'gone');
    else notice(api.describe(error), 'error');
  }
}

async function poll(card) {
  while (!card.done && !card.abort.signal.aborted) {
    draw(card, await api.get(`v1/jobs/${card.job.id}`));
    if (!card.done) await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export async function cancel(jobId) {
  try {
    const job = await api.json('DELETE', `v1/jobs/${jobId}`);
    const card = cards.get(jobId);
    if (card) draw(card, job);
    notice(`Job ${shortId(jobId)}: ${job.status}.`);
    return job;
  } catch (error) {
    if (error instanceof api.ApiError && error.code === 'job_finished') return null; // its stream says how
    throw error;
  }
}

async function showInGallery(job) {
  location.hash = '#gallery';
  await showBoard(job.recipe?.board_id ?? '');
}

function dismiss(jobId) {
  const card = cards.get(jobId);
  card?.abort.abort();
  card?.el.remove();
  cards.delete(jobId);
  remember(jobId, false);
}

// The named recipe's values become the inputs' placeholders: what the job gets if left empty.
async function showRecipe(event) {
  const form = event.target.form;
  const recipe = event.target.value ? await api.get(`v1/recipes/${event.target.value}`) : {};
  for (const name of NUMBERS) {
    const input = form.elements[name];
    input.dataset.placeholder ??= input.placeholder;
    input.placeholder = recipe[name] ?? input.dataset.placeholder;
  }
}

export function setBoardChoices(boards) {
  const select = $('#job-board');
  const chosen = select.value;
  select.replaceChildren(h('option', { value: '' }, 'no board'),
    ...boards.map((board) => h('option', { value: board.id }, board.name)));
  select.value = boards.some((board) => board.id === chosen) ? chosen : '';
}

export async function loadRecipes() {
  const { data } = await api.get('v1/recipes');
  $('#recipe-select').replaceChildren(h('option', { value: '' }, 'none'),
    ...data.map((recipe) => h('option', { value: recipe.name }, recipe.name)));
}

// Cards for this tab's earlier jobs (a reload keeps following the unfinished ones).
export async function restoreCards() {
  const ids = JSON.parse(sessionStorage.getItem(SAVED) ?? '[]');
  for (const id of ids.reverse()) {
    if (cards.has(id)) continue;
    try {
      addCard(await api.get(`v1/jobs/${id}`), false);
    } catch (error) {
      if (error instanceof api.ApiError && error.status === 404) remember(id, false);
    }
  }
}

export function initJobs() {
  $('#job-form').addEventListener('submit', submit);
  $('#recipe-select').addEventListener('change', guard(showRecipe));
}
