// A job's server-sent events read with fetch: an EventSource cannot send the API key header.
// Wire: "event: <type>\ndata: <json>\nid: <seq>\n\n"; comments (": ping") keep the line alive.

import * as api from './api.js';

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export async function* readSse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer = (buffer + value).replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const event = parseBlock(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (event) yield event;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parseBlock(block) {
  let type = 'message';
  let id = null;
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
  }
  return data.length ? { type, id, data: JSON.parse(data.join('\n')) } : null;
}

function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

// Calls onEvent for each event until the job ends; a dropped stream resumes with Last-Event-ID.
// Ends with the terminal event; an API error (404, 401) or the signal's abort is thrown.
export async function followJob(jobId, onEvent, signal) {
  let last = null;
  for (let failures = 0; ;) {
    try {
      const headers = last === null ? {} : { 'Last-Event-ID': last };
      const response = await api.raw('GET', `v1/jobs/${jobId}/events`, { headers, signal });
      for await (const event of readSse(response.body)) {
        if (event.id !== null) last = event.id;
        failures = 0;
        onEvent(event);
        if (TERMINAL.has(event.type)) return event;
      }
    } catch (error) {
      if (error instanceof api.ApiError || signal?.aborted) throw error;
      // A network error mid-stream: retry below, as for a stream that closed without an end.
    }
    await pause(Math.min(10_000, 500 * 2 ** failures), signal);
    failures += 1;
  }
}
