// Health: the model, device and precision the server runs, a warning for the tiny test model,
// and the live workers. Refreshed every 10 s while the tab is shown.

import * as api from './api.js';
import { $, facts, h, poller, seconds, shortId } from './dom.js';

const EVERY_MS = 10_000;

export function showHealth(health) {
  const warning = $('#tiny-warning');
  warning.hidden = !health.tiny_model;
  warning.textContent = health.tiny_model
    ? `Tiny test model: ${health.model_note ?? 'random weights, not SDXL'}. Pictures are noise patterns.`
    : '';
  $('#model-badge').hidden = !health.tiny_model;
  const device = [health.device, health.device_name !== health.device ? health.device_name : null,
    health.vram_gb ? `${health.vram_gb} GB` : null].filter(Boolean).join(', ');
  facts($('#health-list'), [
    ['Status', health.status, 'status'],
    ['Model', `${health.model ?? '—'} (${health.model_state})`, 'model'],
    ['Refiner', health.refiner_model, 'refiner_model'],
    ['Note', health.tiny_model ? null : health.model_note, 'model_note'],
    ['Load error', health.load_error, 'load_error'],
    ['Device', device, 'device'],
    ['Precision', [health.precision, health.vae_dtype && `VAE ${health.vae_dtype}`].filter(Boolean).join(', '), 'precision'],
    ['Fast path', (health.fast_path ?? []).join(', '), 'fast_path'],
  ]);
  const rows = (health.workers ?? []).map((worker) => h('tr', { dataset: { workerId: worker.id } },
    h('td', {}, h('code', {}, shortId(worker.id)), ` ${worker.host}`),
    h('td', {}, worker.device),
    h('td', {}, worker.model),
    h('td', {}, worker.precision),
    h('td', {}, worker.ready ? worker.state : `${worker.state} (not ready)`),
    h('td', {}, worker.current_job_ids.map(shortId).join(', ') || '—'),
    h('td', {}, `${seconds(worker.heartbeat_age_s)} ago`)));
  $('#workers-table tbody').replaceChildren(...rows);
}

export async function loadHealth() {
  const health = await api.get('api/media/health');
  showHealth(health);
  return health;
}

export const watchHealth = poller(loadHealth, EVERY_MS);
