// Services: the list (one summary per name from /v1/internal/ui/services,
// never every instance), a service's instances with their checks
// (/v1/health/service/<name>), and one instance's checks.
import { useMemo } from 'preact/hooks';
import {
  html, Link, url, useLive, useParam, useFilters, useIncremental, useRenderMark, ErrorNote, Status, Tags, worst,
} from '../lib.mjs';
import { CheckList, CheckCounts } from '../checks.mjs';

const health = (s) => (s.ChecksCritical > 0 ? 'critical' : s.ChecksWarning > 0 ? 'warning' : 'passing');
const rank = { critical: 0, warning: 1, passing: 2 };

const SORTS = {
  name: (a, b) => a.Name.localeCompare(b.Name),
  '-name': (a, b) => b.Name.localeCompare(a.Name),
  health: (a, b) => rank[health(a)] - rank[health(b)] || a.Name.localeCompare(b.Name),
  instances: (a, b) => b.InstanceCount - a.InstanceCount || a.Name.localeCompare(b.Name),
};

export function Services({ dc }) {
  const { data, error, loading } = useLive('/v1/internal/ui/services', dc);
  const [sort, setSort] = useParam('sort', 'name');
  const { q, status, controls } = useFilters('name or tag', html`<label>Sort
    <select value=${sort} onChange=${(e) => setSort(e.currentTarget.value)}>
      <option value="name">name A–Z</option><option value="-name">name Z–A</option>
      <option value="health">unhealthy first</option><option value="instances">most instances</option>
    </select></label>`);
  const rows = useMemo(() => {
    const out = (data || []).filter((s) => (!status || health(s) === status)
      && (!q || s.Name.toLowerCase().includes(q) || (s.Tags || []).some((t) => t.toLowerCase().includes(q))));
    return out.sort(SORTS[sort] || SORTS.name);
  }, [data, q, status, sort]);
  const [shown, more] = useIncremental(rows.length);
  useRenderMark('muster:services', data !== null);
  return html`<section>
    <h1>Services <span class="count">${data ? data.length : ''}</span></h1>
    <${ErrorNote} error=${error} />
    ${controls}
    ${loading && html`<p class="notice">Loading…</p>`}
    ${data && rows.length === 0 && html`<p class="empty">No services match.</p>`}
    <ul class="rows" aria-label="services">
      ${rows.slice(0, shown).map((s) => html`<li class="row service-row" data-service=${s.Name}>
        <${Link} class="name" href=${url(dc, 'services', s.Name, 'instances')}>${s.Name}<//>
        <${CheckCounts} passing=${s.ChecksPassing} warning=${s.ChecksWarning} critical=${s.ChecksCritical} />
        <span class="instances">${s.InstanceCount} ${s.InstanceCount === 1 ? 'instance' : 'instances'}</span>
        <${Tags} tags=${s.Tags} />
      </li>`)}
    </ul>
    ${more}
  </section>`;
}

// The address a client uses: the service's own, else its node's.
const addressOf = (e) => `${e.Service.Address || e.Node.Address}:${e.Service.Port}`;

export function Service({ dc, name }) {
  const { data, error, loading } = useLive(`/v1/health/service/${encodeURIComponent(name)}`, dc);
  const { q, status, controls } = useFilters('node, ID, address or tag');
  const rows = useMemo(() => (data || []).filter((e) => (!status || worst(e.Checks) === status)
    && (!q || e.Node.Node.toLowerCase().includes(q) || e.Service.ID.toLowerCase().includes(q)
      || addressOf(e).includes(q) || (e.Service.Tags || []).some((t) => t.toLowerCase().includes(q)))),
  [data, q, status]);
  const [shown, more] = useIncremental(rows.length, 50);
  useRenderMark('muster:service', data !== null);
  const counts = { passing: 0, warning: 0, critical: 0 };
  (data || []).forEach((e) => { counts[worst(e.Checks)] += 1; });
  return html`<section>
    <p class="crumbs"><${Link} href=${url(dc, 'services')}>Services<//> /</p>
    <h1>${name}</h1>
    <${ErrorNote} error=${error} />
    ${data && html`<p class="summary">${data.length} ${data.length === 1 ? 'instance' : 'instances'}:
      ${' '}<${CheckCounts} ...${counts} /></p>`}
    ${controls}
    ${loading && html`<p class="notice">Loading…</p>`}
    ${data && data.length === 0 && html`<p class="empty">No instances of ${name} are registered.</p>`}
    <ul class="cards" aria-label="instances">
      ${rows.slice(0, shown).map((e) => html`<li class="card instance" data-instance=${`${e.Node.Node}/${e.Service.ID}`}>
        <div class="card-head">
          <${Status} status=${worst(e.Checks)} />
          <${Link} class="name" href=${url(dc, 'services', name, 'instances', e.Node.Node, e.Service.ID, 'health-checks')}>${e.Service.ID}<//>
          <span>on <${Link} href=${url(dc, 'nodes', e.Node.Node, 'health-checks')}>${e.Node.Node}<//></span>
          <code>${addressOf(e)}</code>
          <${Tags} tags=${e.Service.Tags} />
        </div>
        <${Meta} meta=${e.Service.Meta} />
        <${CheckList} checks=${e.Checks} />
      </li>`)}
    </ul>
    ${more}
  </section>`;
}

export function Meta({ meta }) {
  const entries = Object.entries(meta || {});
  if (entries.length === 0) return null;
  return html`<dl class="meta">${entries.map(([k, v]) => html`<div><dt>${k}</dt><dd>${v}</dd></div>`)}</dl>`;
}

export function Instance({ dc, name, node, id }) {
  const { data, error } = useLive(`/v1/health/service/${encodeURIComponent(name)}`, dc);
  const e = (data || []).find((x) => x.Node.Node === node && x.Service.ID === id);
  return html`<section>
    <p class="crumbs"><${Link} href=${url(dc, 'services')}>Services<//> /
      ${' '}<${Link} href=${url(dc, 'services', name, 'instances')}>${name}<//> /</p>
    <h1>${id}</h1>
    <${ErrorNote} error=${error} />
    ${data && !e && html`<p class="empty">No instance ${id} of ${name} on ${node}.</p>`}
    ${e && html`<div>
      <p class="summary"><${Status} status=${worst(e.Checks)} /> on
        ${' '}<${Link} href=${url(dc, 'nodes', node, 'health-checks')}>${node}<//>
        ${' '}at <code>${addressOf(e)}</code> <${Tags} tags=${e.Service.Tags} /></p>
      <${Meta} meta=${e.Service.Meta} />
      <h2>Health checks</h2>
      <${CheckList} checks=${e.Checks} />
    </div>`}
  </section>`;
}
