// The queue: running jobs, then queued ones by position, each with a Cancel button. Polled every
// 2 s while the tab is shown (one stream per job would use up the browser's connections).

import * as api from './api.js';
import { $, guard, h, notice, poller, shortId } from './dom.js';
import { cancel } from './jobs.js';

const EVERY_MS = 2000;

function row(job) {
  const position = job.status === 'running' ? 'running' : String((job.queue_position ?? 0) + 1);
  const progress = job.status === 'running'
    ? [h('progress', { max: 1, value: job.progress }), ` ${job.stage ?? ''} ${job.step}/${job.total_steps}`]
    : [];
  return h('tr', { dataset: { jobId: job.id, status: job.status } },
    h('td', {}, position),
    h('td', {}, h('code', {}, shortId(job.id))),
    h('td', { dataset: { field: 'status' } }, job.status),
    h('td', {}, ...progress),
    h('td', { class: 'prompt' }, job.recipe?.prompt ?? ''),
    h('td', {}, h('button', { type: 'button', dataset: { action: 'cancel' },
      'aria-label': `Cancel job ${shortId(job.id)}`, onclick: guard(() => cancelRow(job.id)) }, 'Cancel')));
}

async function cancelRow(jobId) {
  const job = await cancel(jobId);
  if (job) notice(`Job ${shortId(jobId)} ${job.status}.`);
  await refresh();
}

export async function refresh() {
  const [running, queued] = await Promise.all([
    api.get('v1/jobs', { status: 'running', limit: 100 }),
    api.get('v1/jobs', { status: 'queued', limit: 100 }),
  ]);
  const waiting = [...queued.data].sort((a, b) => (a.queue_position ?? 0) - (b.queue_position ?? 0));
  const rows = [...running.data, ...waiting].map(row);
  $('#queue-table tbody').replaceChildren(...rows);
  $('#queue-table').hidden = rows.length === 0;
  $('#queue-empty').hidden = rows.length > 0;
}

export const showQueue = poller(refresh, EVERY_MS);
