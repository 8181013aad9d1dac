// Boot: ask for the API key when the server wants one, then start the tabs (routed by the URL's hash).

import * as api from './api.js';
import { $, $$, notice } from './dom.js';
import { initGallery, loadBoards, onBoards, refresh as refreshGallery } from './gallery.js';
import { loadHealth, watchHealth } from './health.js';
import { initImageDialog, setMoveTargets } from './image.js';
import { initJobs, loadRecipes, restoreCards, setBoardChoices } from './jobs.js';
import { showQueue } from './queue.js';

const TABS = ['gallery', 'create', 'queue', 'health'];
let started = false;
let submittedKey = false;

function route() {
  const wanted = location.hash.slice(1);
  const tab = TABS.includes(wanted) ? wanted : 'gallery';
  for (const panel of $$('[data-panel]')) panel.hidden = panel.dataset.panel !== tab;
  for (const link of $$('[data-tab]')) {
    if (link.dataset.tab === tab) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.body.dataset.tab = tab;
  if (started) {
    showQueue(tab === 'queue');
    watchHealth(tab === 'health');
  }
}

// Any call that met a 401 lands here: no key yet, a wrong one, or one the server no longer takes.
function askKey() {
  const dialog = $('#key-dialog');
  const error = $('#key-error');
  const refused = submittedKey || api.getKey() !== null;
  error.hidden = !refused;
  error.textContent = refused ? 'The server refused this API key. Check it and try again.' : '';
  document.body.dataset.keyState = refused ? 'refused' : 'needed';
  if (!dialog.open) dialog.showModal();
  $('#key-input').select();
}

async function useKey(event) {
  event.preventDefault();
  const key = $('#key-input').value.trim();
  if (!key) return;
  api.setKey(key);
  submittedKey = true;
  await probe();
}

// The first call: the health route says whether the key works (and what model runs).
async function probe() {
  try {
    await loadHealth();
  } catch (error) {
    if (!(error instanceof api.ApiError && error.status === 401)) notice(api.describe(error), 'error');
    return;
  }
  document.body.dataset.keyState = 'ok';
  if ($('#key-dialog').open) {
    $('#key-dialog').close();
    $('#key-input').value = '';
  }
  await start();
}

async function start() {
  if (started) {
    await Promise.allSettled([loadBoards(), refreshGallery()]);
    return;
  }
  started = true;
  route();
  const results = await Promise.allSettled([loadBoards(), refreshGallery(), loadRecipes(), restoreCards()]);
  for (const result of results) {
    if (result.status === 'rejected') notice(api.describe(result.reason), 'error');
  }
  document.body.dataset.ready = 'true';
}

function init() {
  initGallery();
  initImageDialog();
  initJobs();
  onBoards((boards) => {
    setMoveTargets(boards);
    setBoardChoices(boards);
  });
  $('#key-form').addEventListener('submit', useKey);
  // Without a key nothing works: Escape does not dismiss the key dialog.
  $('#key-dialog').addEventListener('cancel', (event) => event.preventDefault());
  window.addEventListener('needkey', askKey);
  window.addEventListener('hashchange', route);
  // A stream the page stops on purpose rejects with AbortError: not an error worth a console line.
  window.addEventListener('unhandledrejection', (event) => {
    if (event.reason?.name === 'AbortError') event.preventDefault();
  });
  route();
  probe();
}

init();
