// The muster web UI: routes Consul's URL layout under the content path to
// the pages, with a header for the datacenter and the sections.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { html, Link, url, navigate, appPath, useLocation, getJson, ROOT } from './lib.mjs';
import { Services, Service, Instance } from './pages/services.mjs';
import { Nodes, Node } from './pages/nodes.mjs';
import { KvList, KvEdit, KvCreate } from './pages/kv.mjs';
import { Settings } from './pages/settings.mjs';

// This agent's datacenter and every datacenter it knows.
function useDatacenters() {
  const [dcs, setDcs] = useState({ local: '', all: [] });
  useEffect(() => {
    (async () => {
      try {
        const self = await getJson('/v1/agent/self');
        const all = await getJson('/v1/catalog/datacenters').catch(() => []);
        const local = self.Config.Datacenter;
        setDcs({ local, all: all.includes(local) ? all : [local, ...all] });
      } catch (e) {
        setDcs({ local: 'dc1', all: ['dc1'] });
      }
    })();
  }, []);
  return dcs;
}

// The page for an app path's segments.
function route(segs) {
  const [dc, section, ...rest] = segs;
  const d = decodeURIComponent;
  switch (section) {
    case 'services':
      if (rest.length === 0 || rest[0] === '') return html`<${Services} dc=${dc} />`;
      if (rest.length >= 5 && rest[1] === 'instances') {
        return html`<${Instance} dc=${dc} name=${d(rest[0])} node=${d(rest[2])} id=${d(rest[3])} />`;
      }
      return html`<${Service} dc=${dc} name=${d(rest[0])} />`;
    case 'nodes':
      if (rest.length === 0 || rest[0] === '') return html`<${Nodes} dc=${dc} />`;
      return html`<${Node} dc=${dc} node=${d(rest[0])} tab=${rest[1] || 'health-checks'} />`;
    case 'kv': {
      const parts = rest.map(d);
      const last = parts[parts.length - 1];
      if (last === 'edit' && parts.length > 1) return html`<${KvEdit} dc=${dc} kvKey=${parts.slice(0, -1).join('/')} />`;
      // A folder is a prefix ending in `/` (`/ui/dc1/kv/app/` is `app/`).
      const folder = (list) => {
        const p = list.join('/');
        return p && !p.endsWith('/') ? p + '/' : p;
      };
      if (last === 'create') return html`<${KvCreate} dc=${dc} prefix=${folder(parts.slice(0, -1))} />`;
      return html`<${KvList} dc=${dc} prefix=${folder(parts)} />`;
    }
    case 'settings':
      return html`<${Settings} />`;
    default:
      return html`<section><h1>Not found</h1><p>No page at <code>${ROOT}${segs.join('/')}</code>.
        ${' '}<${Link} href=${url(dc, 'services')}>Services<//></p></section>`;
  }
}

const SECTIONS = [['services', 'Services'], ['nodes', 'Nodes'], ['kv', 'Key / Value'], ['settings', 'Settings']];

function App() {
  useLocation();
  const dcs = useDatacenters();
  const segs = appPath().split('/');
  if (!dcs.local) return html`<p class="notice">Loading…</p>`;
  // `/ui/` and `/ui/<dc>` land on the services list.
  if (segs[0] === '' || segs.length === 1 || segs[1] === '') {
    navigate(url(segs[0] || dcs.local, 'services'), { replace: true });
    return null;
  }
  const dc = segs[0];
  const section = segs[1];
  const switchDc = (e) => {
    const rest = appPath().split('/').slice(1, 2);
    navigate(url(e.currentTarget.value, ...rest));
  };
  return html`<div class="app">
    <header>
      <span class="brand">muster</span>
      <nav aria-label="sections">
        ${SECTIONS.map(([s, label]) => html`<${Link} href=${url(dc, s)}
          aria-current=${s === section ? 'page' : undefined}>${label}<//>`)}
      </nav>
      <label class="dc">Datacenter
        <select value=${dc} onChange=${switchDc}>
          ${dcs.all.map((d) => html`<option value=${d}>${d}</option>`)}
        </select></label>
    </header>
    <main key=${location.pathname}>${route(segs)}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
