// The service's public HTTP API, addressed relative to this page (so it works under a path prefix).
// The API key lives in sessionStorage: once per tab, never in a URL, gone with the tab.

const ROOT = new URL('../', import.meta.url);
const KEY = 'cofounder_agent.api_key';

export class ApiError extends Error {
  constructor(status, code, message, field = null, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    Object.assign(this, { status, code, field, retryAfter });
  }
}

export const getKey = () => sessionStorage.getItem(KEY);

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export function url(path, query = {}) {
  const target = new URL(path, ROOT);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') target.searchParams.set(name, String(value));
  }
  return target;
}

async function errorOf(response) {
  let detail = {};
  try {
    detail = (await response.json()).error ?? {};
  } catch {
    // Not our JSON error shape (a proxy's page): the status line is all there is.
  }
  const message = detail.message ?? `${response.status} ${response.statusText}`.trim();
  const error = new ApiError(response.status, detail.code ?? 'http_error', message, detail.field ?? null,
    response.headers.get('Retry-After'));
  // One place learns that the key is missing or wrong, whatever call found out.
  if (response.status === 401) window.dispatchEvent(new CustomEvent('needkey', { detail: error }));
  return error;
}

// The response itself (for streams and files); any status but 2xx throws an ApiError.
export async function raw(method, path, { query, body, headers = {}, signal } = {}) {
  const sent = { ...headers };
  const key = getKey();
  if (key) sent['X-API-Key'] = key;
  let payload;
  if (body !== undefined) {
    // Always JSON: a same-origin POST carries Origin, and the server refuses form bodies then.
    sent['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const response = await fetch(url(path, query), { method, headers: sent, body: payload, signal });
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function json(method, path, options = {}) {
  const response = await raw(method, path, options);
  return response.status === 204 ? null : response.json();
}

export const get = (path, query) => json('GET', path, { query });

// Pictures go four at a time: the browser has six connections per origin and job streams hold some.
const SLOTS = 4;
let busy = 0;
const waiting = [];

async function take() {
  if (busy < SLOTS) {
    busy += 1;
    return;
  }
  await new Promise((resolve) => waiting.push(resolve));
}

function give() {
  const next = waiting.shift();
  if (next) next();
  else busy -= 1;
}

export async function blob(path, query) {
  await take();
  try {
    return await (await raw('GET', path, { query })).blob();
  } finally {
    give();
  }
}

// An <img> cannot send a header, so every picture is fetched with the key and shown as a blob URL
// (the caller revokes it when the picture leaves the page).
export async function pictureUrl(imageId, variant = 'full') {
  const picture = await blob(`v1/images/${imageId}`, variant === 'full' ? {} : { variant });
  return URL.createObjectURL(picture);
}

export function describe(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) return 'The server refused this API key.';
    if (error.status === 429) return `The queue is full; try again${error.retryAfter ? ` in ${error.retryAfter} s` : ' later'}.`;
    return error.message;
  }
  return `The server cannot be reached (${error.message}).`;
}
