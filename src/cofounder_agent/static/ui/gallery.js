// Boards and the image grid: pick a board (or none, or all), page through thumbnails loaded as
// they scroll into view, manage boards, and download a board as a zip.

import * as api from './api.js';
import { $, confirm, guard, h, notice } from './dom.js';
import { openImage } from './image.js';

const PAGE = 48;
const state = { board: '', offset: 0, count: 0, boards: [], urls: [], observer: null, loading: 0 };
const boardListeners = new Set();

export const boards = () => state.boards;

// Called with the board list now and on every change (the job form and the image dialog list them).
export function onBoards(listener) {
  boardListeners.add(listener);
  listener(state.boards);
}

export async function loadBoards() {
  state.boards = (await api.get('v1/boards')).data;
  const select = $('#board-select');
  select.replaceChildren(
    h('option', { value: '' }, 'All images'),
    h('option', { value: 'none' }, 'No board'),
    ...state.boards.map((board) => h('option', { value: board.id }, board.name)),
  );
  if (![...select.options].some((option) => option.value === state.board)) state.board = '';
  select.value = state.board;
  showBoardControls();
  for (const listener of boardListeners) listener(state.boards);
}

function showBoardControls() {
  const real = state.board !== '' && state.board !== 'none';
  for (const id of ['#board-zip', '#board-delete', '#board-rename']) $(id).disabled = !real;
}

// Show a board's first page ('' = every image, 'none' = images in no board).
export async function showBoard(boardId) {
  state.board = boardId;
  state.offset = 0;
  $('#board-select').value = boardId;
  showBoardControls();
  await refresh();
}

// Redraw the current page; an image that joined or left the board shows at once.
export async function refresh() {
  const ticket = ++state.loading;
  const query = { order: 'newest', intermediate: false, limit: PAGE, offset: state.offset };
  if (state.board) query.board_id = state.board;
  const page = await api.get('v1/images', query);
  if (ticket !== state.loading) return; // a newer refresh is on its way
  if (page.data.length === 0 && state.offset > 0) {
    state.offset = Math.max(0, Math.floor((page.count - 1) / PAGE) * PAGE);
    await refresh();
    return;
  }
  state.count = page.count;
  const grid = $('#grid');
  const ids = page.data.map((image) => image.id).join(' ');
  // The same pictures as shown: keep the tiles (and their loaded thumbnails) as they are.
  if (grid.dataset.ids !== ids || grid.dataset.board !== state.board) render(page.data);
  else describePage(page.data.length);
  grid.dataset.ids = ids;
  grid.dataset.board = state.board;
}

function forgetPictures() {
  state.observer?.disconnect();
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
}

function render(images) {
  forgetPictures();
  state.observer = new IntersectionObserver(reveal, { rootMargin: '200px' });
  const grid = $('#grid');
  grid.replaceChildren(...images.map(tile));
  for (const img of grid.querySelectorAll('img')) state.observer.observe(img);
  describePage(images.length);
}

function describePage(shown) {
  const last = Math.min(state.offset + shown, state.count);
  $('#gallery-count').textContent = state.count === 0
    ? 'No images here yet.'
    : `${state.offset + 1}–${last} of ${state.count} images, newest first`;
  $('#page-info').textContent = state.count > PAGE
    ? `Page ${Math.floor(state.offset / PAGE) + 1} of ${Math.ceil(state.count / PAGE)}` : '';
  $('#page-prev').disabled = state.offset === 0;
  $('#page-next').disabled = state.offset + PAGE >= state.count;
}

function tile(image) {
  const label = `Image ${image.id.slice(0, 8)}, ${image.width}×${image.height}`;
  return h('li', {},
    h('button', { type: 'button', class: 'tile', dataset: { imageId: image.id }, 'aria-label': label,
      onclick: (event) => openImage(image.id, event.currentTarget) },
    h('img', { alt: '', width: image.width, height: image.height, dataset: { imageId: image.id } })));
}

// Thumbnails are fetched (with the key) only when their tile comes near the viewport.
function reveal(entries, observer) {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    observer.unobserve(entry.target);
    loadThumbnail(entry.target);
  }
}

async function loadThumbnail(img) {
  const button = img.closest('[data-image-id]');
  try {
    const url = await api.pictureUrl(img.dataset.imageId, 'thumbnail');
    if (!img.isConnected) {
      URL.revokeObjectURL(url);
      return;
    }
    state.urls.push(url);
    img.src = url;
    button.dataset.loaded = 'true';
  } catch (error) {
    button.dataset.loaded = 'failed';
    button.title = api.describe(error);
  }
}

async function changePage(delta) {
  state.offset = Math.max(0, state.offset + delta * PAGE);
  await refresh();
  $('#grid button')?.focus();
}

async function saveBoard(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const name = form.elements.name.value.trim();
  if (!name) return;
  const renaming = event.submitter?.value === 'rename';
  const board = renaming
    ? await api.json('PATCH', `v1/boards/${state.board}`, { body: { name } })
    : await api.json('POST', 'v1/boards', { body: { name } });
  form.reset();
  state.board = board.id;
  await loadBoards();
  await showBoard(board.id);
  notice(renaming ? `Board renamed to “${board.name}”.` : `Board “${board.name}” created.`);
}

async function deleteBoard() {
  const board = state.boards.find((b) => b.id === state.board);
  if (!board) return;
  const keep = await confirm(`Delete the board “${board.name}”? Its images stay, in no board.`);
  if (!keep) return;
  await api.json('DELETE', `v1/boards/${board.id}`);
  state.board = '';
  await loadBoards();
  await showBoard('');
  notice(`Board “${board.name}” deleted.`);
}

// The zip is fetched with the key, then handed to the browser as a download.
async function downloadZip() {
  const link = $('#board-zip-link');
  if (link.href) URL.revokeObjectURL(link.href);
  const zip = await api.blob(`v1/boards/${state.board}/download`);
  link.href = URL.createObjectURL(zip);
  link.download = `board-${state.board}.zip`;
  link.click();
}

export function initGallery() {
  $('#board-select').addEventListener('change', guard((event) => showBoard(event.target.value)));
  $('#page-prev').addEventListener('click', guard(() => changePage(-1)));
  $('#page-next').addEventListener('click', guard(() => changePage(1)));
  $('#board-form').addEventListener('submit', guard(saveBoard));
  $('#board-delete').addEventListener('click', guard(deleteBoard));
  $('#board-zip').addEventListener('click', guard(downloadZip));
  window.addEventListener('imageschanged', guard(refresh));
}
