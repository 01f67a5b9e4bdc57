// Shared by every page: htm bound to Preact, the router (Consul's URL
// layout under the content path), the API client with the ACL token, and
// the hook that keeps a read live through blocking queries.
import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

// --- Routing ---------------------------------------------------------------

// The content path (`/ui/` unless ui_config.content_path says otherwise),
// from the <base> the agent wrote.
export const ROOT = new URL(document.baseURI).pathname;

// The app-relative path, e.g. `dc1/services/web/instances`.
export function appPath() {
  const p = location.pathname;
  return p.startsWith(ROOT) ? p.slice(ROOT.length) : p.replace(/^\//, '');
}

// An app URL from path segments (each one encoded, so names with `/` or
// `?` survive), e.g. url('dc1', 'services', 'web').
export function url(...segments) {
  return ROOT + segments.map(encodeURIComponent).join('/');
}

// A KV URL: the key keeps its slashes, each part encoded.
export function kvUrl(dc, key, suffix = '') {
  return ROOT + encodeURIComponent(dc) + '/kv/' + key.split('/').map(encodeURIComponent).join('/') + suffix;
}

const listeners = new Set();
export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', to); else history.pushState(null, '', to);
  listeners.forEach((f) => f());
  window.scrollTo(0, 0);
}
addEventListener('popstate', () => listeners.forEach((f) => f()));

// Re-render on navigation; returns the current location.
export function useLocation() {
  const [, tick] = useState(0);
  useEffect(() => {
    const f = () => tick((n) => n + 1);
    listeners.add(f);
    return () => listeners.delete(f);
  }, []);
  return location.pathname + location.search;
}

// A link that navigates without a page load (modified clicks open tabs as
// usual).
export function Link({ href, children, ...rest }) {
  const click = (e) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return html`<a href=${href} onClick=${click} ...${rest}>${children}</a>`;
}

// A search parameter kept in the URL (so filters survive reloads and can
// be shared), with a setter that replaces the history entry.
export function useParam(name, fallback = '') {
  useLocation();
  const value = new URLSearchParams(location.search).get(name) ?? fallback;
  const set = (v) => {
    const q = new URLSearchParams(location.search);
    if (v === fallback || v === '') q.delete(name); else q.set(name, v);
    const s = q.toString();
    navigate(location.pathname + (s ? '?' + s : ''), { replace: true });
  };
  return [value, set];
}

// The search box and health filter of a list page, kept in the URL
// (`?filter=`, `?status=`); `extra` adds controls (a sort order). `q` comes
// lowercased for matching.
export function useFilters(placeholder, extra = null) {
  const [q, setQ] = useParam('filter');
  const [status, setStatus] = useParam('status');
  const controls = html`<div class="controls">
    <label>Search <input type="search" placeholder=${placeholder} value=${q}
      onInput=${(e) => setQ(e.currentTarget.value)} /></label>
    <label>Health <select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>
      <option value="">any</option><option value="passing">passing</option>
      <option value="warning">warning</option><option value="critical">critical</option>
    </select></label>
    ${extra}
  </div>`;
  return { q: q.trim().toLowerCase(), status, controls };
}

// --- The API ---------------------------------------------------------------

const TOKEN = 'muster:token';
export const token = {
  get: () => localStorage.getItem(TOKEN) || '',
  set: (t) => (t ? localStorage.setItem(TOKEN, t) : localStorage.removeItem(TOKEN)),
};

export class ApiError extends Error {
  constructor(status, text) {
    super(`${status}: ${text.trim() || 'request failed'}`);
    this.status = status;
  }
}

function headers() {
  const t = token.get();
  return t ? { 'X-Consul-Token': t } : {};
}

function withParams(path, params) {
  const q = new URLSearchParams(params).toString();
  return q ? path + (path.includes('?') ? '&' : '?') + q : path;
}

// One request; non-2xx throws an ApiError with the server's text.
export async function api(method, path, { body, dc, signal } = {}) {
  const resp = await fetch(withParams(path, dc ? { dc } : {}), { method, headers: headers(), body, signal });
  if (!resp.ok) throw new ApiError(resp.status, await resp.text());
  return resp;
}

export const getJson = async (path, opts) => (await api('GET', path, opts)).json();

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); });
});

// Every live query's controller. A page the browser puts in its
// back/forward cache keeps its requests open (and a browser allows 6
// connections per host): so on `pagehide` every live query is aborted, and
// a page restored from that cache reloads to start them again.
const liveQueries = new Set();
addEventListener('pagehide', () => liveQueries.forEach((c) => c.abort()));
addEventListener('pageshow', (e) => { if (e.persisted) location.reload(); });

// A read kept current with blocking queries (`?index=`): the first answer
// at once, then each change as the server wakes the query; never timed
// polling. `notFound` marks a 404 answer (a missing KV key).
export function useLive(path, dc) {
  const [state, setState] = useState({ data: null, error: null, loading: true, notFound: false });
  useEffect(() => {
    if (!path) return undefined;
    const ctl = new AbortController();
    liveQueries.add(ctl);
    setState({ data: null, error: null, loading: true, notFound: false });
    (async () => {
      let index = 0;
      let backoff = 0;
      while (!ctl.signal.aborted) {
        try {
          const params = { dc };
          if (index > 0) Object.assign(params, { index, wait: '5m' });
          const resp = await fetch(withParams(path, params), { headers: headers(), signal: ctl.signal });
          const next = Number(resp.headers.get('X-Consul-Index')) || 0;
          if (resp.status === 404) {
            setState({ data: null, error: null, loading: false, notFound: true });
          } else if (!resp.ok) {
            throw new ApiError(resp.status, await resp.text());
          } else {
            const data = await resp.json();
            setState({ data, error: null, loading: false, notFound: false });
          }
          // An index that went backwards (a restored snapshot) starts over.
          index = next < index ? 0 : next;
          backoff = 0;
        } catch (e) {
          if (ctl.signal.aborted) break;
          setState((s) => ({ ...s, error: e, loading: false }));
          backoff = Math.min(Math.max(backoff * 2, 1000), 10000);
          await sleep(backoff, ctl.signal);
        }
      }
    })();
    return () => {
      ctl.abort();
      liveQueries.delete(ctl);
    };
  }, [path, dc]);
  return state;
}

// --- Small pieces ------------------------------------------------------------

// Render a long list a page at a time: the first `step` rows at once, more
// as the end scrolls into view (so 5,000 rows never block the first paint,
// and keyboard users reach every row by tabbing on).
export function useIncremental(count, step = 100) {
  const [shown, setShown] = useState(step);
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return undefined;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) setShown((n) => n + step);
    }, { rootMargin: '400px' });
    io.observe(el);
    return () => io.disconnect();
  }, [shown, count]);
  const more = shown < count
    ? html`<div class="more" ref=${ref} role="status">Showing ${shown} of ${count}…</div>`
    : null;
  return [Math.min(shown, count), more];
}

// Mark the first render with data (once per page view), for the
// time-to-first-render figures: `performance.getEntriesByName(name)`.
export function useRenderMark(name, ready) {
  useEffect(() => {
    if (ready && performance.getEntriesByName(name).length === 0) performance.mark(name);
  }, [ready]);
}

export function ErrorNote({ error }) {
  if (!error) return null;
  const hint = error.status === 403 ? ' Set an ACL token under Settings.' : '';
  return html`<p class="error" role="alert">${error.message}${hint}</p>`;
}

export const STATUSES = ['passing', 'warning', 'critical'];

export function Status({ status, count }) {
  const label = count === undefined ? status : `${count} ${status}`;
  return html`<span class="status ${status}">${label}</span>`;
}

export function Tags({ tags }) {
  if (!tags || tags.length === 0) return null;
  return html`<span class="tags">${tags.map((t) => html`<span class="tag">${t}</span>`)}</span>`;
}

// The worst status of a list of checks ('passing' when none).
export function worst(checks) {
  if (checks.some((c) => c.Status === 'critical')) return 'critical';
  if (checks.some((c) => c.Status === 'warning')) return 'warning';
  return 'passing';
}
