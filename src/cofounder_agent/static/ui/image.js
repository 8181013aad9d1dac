// The image dialog: the full picture, how it was made (prompt, seed, steps, refiner, each stage's
// outcome and time), download, move to a board, delete. Every metadata key is optional.

import * as api from './api.js';
import { $, confirm, facts, h, notice, seconds, when } from './dom.js';

const state = { id: null, url: null, opener: null, boards: [] };

export function setMoveTargets(boards) {
  state.boards = boards;
}

function fillMoveSelect(current) {
  $('#image-move').replaceChildren(
    h('option', { value: '' }, 'No board'),
    ...state.boards.map((board) => h('option', { value: board.id }, board.name)),
  );
  $('#image-move').value = current ?? '';
}

function refinerText(params, meta) {
  const mode = params.refiner_mode;
  if (!mode) return null;
  if (mode === 'none') return 'none';
  const applied = meta.refiner_applied === true ? 'applied' : meta.refiner_applied === false ? 'not applied' : '';
  const reason = meta.refiner_fallback_reason ? ` (${meta.refiner_fallback_reason})` : '';
  return [mode, applied].filter(Boolean).join(', ') + reason;
}

function showFacts(record) {
  const meta = record.metadata ?? {};
  const params = meta.params ?? {};
  const size = record.width && record.height ? `${record.width} × ${record.height}` : null;
  facts($('#image-meta'), [
    ['Prompt', params.prompt, 'prompt'],
    ['Negative prompt', params.negative_prompt, 'negative_prompt'],
    ['Seed', params.seed, 'seed'],
    ['Steps', params.steps, 'steps'],
    ['Guidance', params.guidance_scale, 'guidance_scale'],
    ['Scheduler', params.scheduler, 'scheduler'],
    ['Refiner', refinerText(params, meta), 'refiner'],
    ['Size', size, 'size'],
    ['Model', meta.model, 'model'],
    ['Device', [meta.device, meta.precision].filter(Boolean).join(', '), 'device'],
    ['Source', record.source, 'source'],
    ['Refined from', meta.input_image_id, 'input_image_id'],
    ['Job', record.job_id, 'job_id'],
    ['Created', when(record.created_at), 'created_at'],
  ]);
  if (meta.tiny_model) $('#image-meta').append(h('dt', {}, 'Note'), h('dd', {}, 'made by the built-in tiny test model'));
}

function stageRow(name, stage) {
  const steps = stage.steps ? `${stage.steps} steps` : '';
  const detail = typeof stage.detail === 'string' ? stage.detail : stage.detail ? JSON.stringify(stage.detail) : '';
  return h('tr', { dataset: { stage: name } },
    h('th', { scope: 'row' }, name),
    h('td', { dataset: { field: 'outcome' } }, stage.outcome ?? ''),
    h('td', { dataset: { field: 'seconds' } }, seconds(stage.seconds)),
    h('td', {}, [steps, detail].filter(Boolean).join(' · ')));
}

function showStages(meta) {
  const rows = [
    ...(meta.stages ?? []).map((stage) => stageRow(stage.name ?? '?', stage)),
    ...(meta.recipe_stages ?? []).map((stage, i) => stageRow(stage.spec?.type ?? stage.stage ?? `stage ${i + 1}`, stage)),
  ];
  $('#image-stages tbody').replaceChildren(...rows);
  $('#image-stages').hidden = rows.length === 0;
}

function extension(mediaType) {
  return { 'image/jpeg': 'jpg', 'image/webp': 'webp' }[mediaType] ?? 'png';
}

function clearPicture() {
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = null;
  $('#image-full').removeAttribute('src');
  $('#image-download').removeAttribute('href');
}

// Open the dialog for one image; focus goes back to `opener` when it closes.
export async function openImage(imageId, opener = null) {
  const dialog = $('#image-dialog');
  clearPicture();
  state.id = imageId;
  state.opener = opener;
  $('#image-error').hidden = true;
  try {
    const record = await api.get(`v1/images/${imageId}/metadata`);
    if (state.id !== imageId) return;
    dialog.dataset.imageId = imageId;
    $('#image-title').textContent = `Image ${imageId.slice(0, 8)}`;
    showFacts(record);
    showStages(record.metadata ?? {});
    fillMoveSelect(record.board_id);
    if (!dialog.open) dialog.showModal();
    const url = await api.pictureUrl(imageId);
    if (state.id !== imageId) {
      URL.revokeObjectURL(url);
      return;
    }
    state.url = url;
    $('#image-full').src = url;
    $('#image-full').alt = record.metadata?.params?.prompt?.slice(0, 120) ?? 'the image';
    $('#image-download').href = url;
    $('#image-download').download = `${imageId}.${extension(record.media_type)}`;
    dialog.dataset.loaded = 'true';
  } catch (error) {
    notice(api.describe(error), 'error');
  }
}

function changed(text) {
  $('#image-dialog').close();
  window.dispatchEvent(new CustomEvent('imageschanged'));
  notice(text);
}

async function move() {
  const target = $('#image-move').value || null;
  await api.json('PATCH', `v1/images/${state.id}`, { body: { board_id: target } });
  const name = state.boards.find((board) => board.id === target)?.name;
  changed(name ? `Image moved to “${name}”.` : 'Image taken out of its board.');
}

async function remove() {
  const id = state.id;
  if (!(await confirm(`Delete image ${id.slice(0, 8)} for good?`))) {
    $('#image-delete').focus();
    return;
  }
  await api.json('DELETE', `v1/images/${id}`);
  state.opener = null; // its tile is gone
  changed('Image deleted.');
}

function closed() {
  const dialog = $('#image-dialog');
  delete dialog.dataset.imageId;
  delete dialog.dataset.loaded;
  state.id = null;
  clearPicture();
  if (state.opener?.isConnected) state.opener.focus();
}

function failed(action) {
  return async () => {
    try {
      await action();
    } catch (error) {
      $('#image-error').textContent = api.describe(error);
      $('#image-error').hidden = false;
    }
  };
}

export function initImageDialog() {
  $('#image-close').addEventListener('click', () => $('#image-dialog').close());
  $('#image-dialog').addEventListener('close', closed);
  $('#image-move-go').addEventListener('click', failed(move));
  $('#image-delete').addEventListener('click', failed(remove));
}
