// Key/Value: browse by `/` (a folder is a prefix ending in `/`), view and
// edit a key (text, with a JSON-validity hint, flags and indexes shown),
// create, delete a key or a whole folder. Saving is check-and-set against
// the ModifyIndex the editor opened, so two editors never overwrite each
// other silently.
import { useEffect, useMemo, useState } from 'preact/hooks';
import {
  html, Link, kvUrl, navigate, api, useLive, useIncremental, useRenderMark, ErrorNote,
} from '../lib.mjs';

const kvPath = (key) => '/v1/kv/' + key.split('/').map(encodeURIComponent).join('/');

// The folders above `key`, as links.
function Crumbs({ dc, prefix }) {
  const parts = prefix.split('/').filter(Boolean);
  return html`<p class="crumbs"><${Link} href=${kvUrl(dc, '')}>Key / Value<//> /
    ${parts.map((p, i) => html` <${Link} href=${kvUrl(dc, parts.slice(0, i + 1).join('/') + '/')}>${p}<//> /`)}</p>`;
}

const parentOf = (key) => {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? '' : trimmed.slice(0, i + 1);
};

export function KvList({ dc, prefix }) {
  const { data, error, loading, notFound } = useLive(`${kvPath(prefix)}?keys&separator=/`, dc);
  const [failure, setFailure] = useState(null);
  const entries = useMemo(() => (data || []).filter((k) => k !== prefix).sort(), [data, prefix]);
  const [shown, more] = useIncremental(entries.length);
  useRenderMark('muster:kv', data !== null || notFound);
  const removeFolder = async () => {
    if (!confirm(`Delete ${prefix} and every key under it?`)) return;
    try {
      await api('DELETE', `${kvPath(prefix)}?recurse`, { dc });
      navigate(kvUrl(dc, parentOf(prefix)));
    } catch (e) { setFailure(e); }
  };
  return html`<section>
    <${Crumbs} dc=${dc} prefix=${prefix} />
    <h1>${prefix || 'Key / Value'}</h1>
    <${ErrorNote} error=${error || failure} />
    <div class="controls">
      <${Link} class="button" href=${kvUrl(dc, prefix, 'create')}>Create<//>
      ${prefix && html`<button type="button" class="danger" onClick=${removeFolder}>Delete folder</button>`}
    </div>
    ${loading && html`<p class="notice">Loading…</p>`}
    ${(notFound || (data && entries.length === 0)) && html`<p class="empty">No keys${prefix ? ` under ${prefix}` : ''}.</p>`}
    <ul class="rows" aria-label="keys">
      ${entries.slice(0, shown).map((k) => {
        const folder = k.endsWith('/');
        const label = k.slice(prefix.length);
        return html`<li class="row kv-row" data-key=${k}>
          <span class="kind" aria-hidden="true">${folder ? '▸' : '·'}</span>
          <${Link} class="name" href=${folder ? kvUrl(dc, k) : kvUrl(dc, k, '/edit')}>${label}<//>
          <span class="muted">${folder ? 'folder' : 'key'}</span>
        </li>`;
      })}
    </ul>
    ${more}
  </section>`;
}

function decode(b64) {
  if (!b64) return { text: '', binary: false };
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), binary: false };
  } catch (e) {
    return { text: b64, binary: true };
  }
}

function jsonHint(text) {
  const t = text.trim();
  if (!t || !'{["'.includes(t[0])) return null;
  try {
    JSON.parse(t);
    return html`<span class="hint ok">valid JSON</span>`;
  } catch (e) {
    return html`<span class="hint bad">not valid JSON: ${e.message}</span>`;
  }
}

export function KvEdit({ dc, kvKey: k }) {
  const { data, error, notFound } = useLive(kvPath(k), dc);
  const entry = data && data[0];
  const [opened, setOpened] = useState(null); // the entry the editor started from
  const [text, setText] = useState('');
  const [failure, setFailure] = useState(null);
  const [saved, setSaved] = useState(false);
  useRenderMark('muster:kv-edit', data !== null || notFound);
  // (Re)open on the entry as it is now: at first, and after a save or
  // "load their version" cleared `opened`.
  useEffect(() => {
    if (entry && !opened) {
      setOpened(entry);
      setText(decode(entry.Value).text);
    }
  }, [entry, opened]);
  const value = opened ? decode(opened.Value) : { text: '', binary: false };
  const changedUnderneath = entry && opened && entry.ModifyIndex !== opened.ModifyIndex;
  const save = async (overwrite) => {
    const cas = overwrite ? entry.ModifyIndex : opened.ModifyIndex;
    try {
      const resp = await api('PUT', `${kvPath(k)}?cas=${cas}&flags=${opened.Flags}`, { dc, body: text });
      if ((await resp.json()) !== true) {
        setFailure({ message: 'Not saved: the key changed since you opened it. Compare, then save again to overwrite.' });
        return;
      }
      setFailure(null);
      setSaved(true);
      setOpened(null); // pick up the saved version (and its new index)
    } catch (e) { setFailure(e); }
  };
  const remove = async () => {
    if (!confirm(`Delete ${k}?`)) return;
    try {
      await api('DELETE', kvPath(k), { dc });
      navigate(kvUrl(dc, parentOf(k)));
    } catch (e) { setFailure(e); }
  };
  return html`<section>
    <${Crumbs} dc=${dc} prefix=${parentOf(k)} />
    <h1>${k.slice(parentOf(k).length)}</h1>
    <${ErrorNote} error=${error || failure} />
    ${notFound && html`<p class="empty">No key ${k}. <${Link} href=${kvUrl(dc, parentOf(k), 'create')}>Create one<//>.</p>`}
    ${opened && html`<form class="kv-form" onSubmit=${(e) => { e.preventDefault(); save(false); }}>
      <dl class="meta kv-meta">
        <div><dt>Flags</dt><dd>${opened.Flags}</dd></div>
        <div><dt>CreateIndex</dt><dd>${opened.CreateIndex}</dd></div>
        <div><dt>ModifyIndex</dt><dd>${opened.ModifyIndex}</dd></div>
        <div><dt>LockIndex</dt><dd>${opened.LockIndex}</dd></div>
        ${opened.Session && html`<div><dt>Session</dt><dd><code>${opened.Session}</code></dd></div>`}
      </dl>
      ${value.binary
        ? html`<p class="notice">Binary value (${atob(opened.Value).length} bytes), shown as base64; it cannot be edited here.</p>
               <pre class="output">${value.text}</pre>`
        : html`<label class="block">Value ${jsonHint(text)}
            <textarea rows="12" spellcheck="false" value=${text}
              onInput=${(e) => { setText(e.currentTarget.value); setSaved(false); }}></textarea></label>`}
      ${changedUnderneath && html`<p class="error" role="alert">Changed by someone else since you opened it
        (ModifyIndex ${opened.ModifyIndex} → ${entry.ModifyIndex}).
        ${' '}<button type="button" onClick=${() => setOpened(null)}>Load their version</button>
        ${' '}<button type="button" class="danger" onClick=${() => save(true)}>Overwrite with mine</button></p>`}
      ${saved && html`<p class="ok" role="status">Saved.</p>`}
      <div class="controls">
        ${!value.binary && html`<button type="submit">Save</button>`}
        <button type="button" class="danger" onClick=${remove}>Delete</button>
      </div>
    </form>`}
  </section>`;
}

export function KvCreate({ dc, prefix }) {
  const [name, setName] = useState('');
  const [text, setText] = useState('');
  const [failure, setFailure] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    const key = prefix + name;
    try {
      // cas=0: only if absent; never overwrite a key by creating it.
      const resp = await api('PUT', `${kvPath(key)}?cas=0`, { dc, body: name.endsWith('/') ? '' : text });
      if ((await resp.json()) !== true) {
        setFailure({ message: `${key} already exists: open it to edit it.` });
        return;
      }
      navigate(name.endsWith('/') ? kvUrl(dc, key) : kvUrl(dc, key, '/edit'));
    } catch (err) { setFailure(err); }
  };
  return html`<section>
    <${Crumbs} dc=${dc} prefix=${prefix} />
    <h1>Create</h1>
    <${ErrorNote} error=${failure} />
    <form class="kv-form" onSubmit=${create}>
      <label class="block">Key or folder (end with / for a folder)
        <span class="with-prefix"><code>${prefix}</code>
        <input required value=${name} onInput=${(e) => setName(e.currentTarget.value)} /></span></label>
      ${!name.endsWith('/') && html`<label class="block">Value ${jsonHint(text)}
        <textarea rows="8" spellcheck="false" value=${text} onInput=${(e) => setText(e.currentTarget.value)}></textarea></label>`}
      <div class="controls"><button type="submit">Save</button></div>
    </form>
  </section>`;
}
