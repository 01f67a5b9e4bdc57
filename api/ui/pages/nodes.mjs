// Nodes: every node with its health counts (/v1/internal/ui/node-summaries:
// counts, not every service and check of the catalog), the raft
// leader marked and the gossip members beside; a node's checks (serfHealth
// included), services and lock sessions (/v1/internal/ui/node/<node>,
// /v1/session/node/<node>), with a destroy button per session.
import { useEffect, useMemo, useState } from 'preact/hooks';
import {
  html, Link, url, api, getJson, useLive, useFilters, useIncremental, useRenderMark, ErrorNote, Status, Tags, worst,
} from '../lib.mjs';
import { CheckList, CheckCounts } from '../checks.mjs';

// Who leads and who is in the pool, read again whenever the nodes change
// (members and leadership show up in the catalog through reconcile).
function useCluster(dc, version) {
  const [cluster, setCluster] = useState({ leader: '', members: [] });
  useEffect(() => {
    let live = true;
    (async () => {
      const out = { leader: '', members: [] };
      try {
        const raft = await getJson('/v1/operator/raft/configuration', { dc });
        out.leader = (raft.Servers || []).find((s) => s.Leader)?.Node || '';
      } catch (e) { /* no leader known: shown as none */ }
      try {
        out.members = await getJson('/v1/agent/members');
      } catch (e) { /* members are the local agent's view; skip on error */ }
      if (live) setCluster(out);
    })();
    return () => { live = false; };
  }, [dc, version]);
  return cluster;
}

export function Nodes({ dc }) {
  const { data, error, loading } = useLive('/v1/internal/ui/node-summaries', dc);
  const { leader, members } = useCluster(dc, data);
  const { q, status, controls } = useFilters('name or address');
  const rows = useMemo(() => (data || []).filter((n) => (!status || health(n) === status)
    && (!q || n.Node.toLowerCase().includes(q) || n.Address.includes(q))), [data, q, status]);
  const [shown, more] = useIncremental(rows.length);
  useRenderMark('muster:nodes', data !== null);
  return html`<section>
    <h1>Nodes <span class="count">${data ? data.length : ''}</span></h1>
    <${ErrorNote} error=${error} />
    <p class="summary">Leader: <strong class="leader-name">${leader || 'none known'}</strong></p>
    ${controls}
    ${loading && html`<p class="notice">Loading…</p>`}
    <ul class="rows" aria-label="nodes">
      ${rows.slice(0, shown).map((n) => html`<li class="row node-row" data-node=${n.Node}>
        <${Link} class="name" href=${url(dc, 'nodes', n.Node, 'health-checks')}>${n.Node}<//>
        ${n.Node === leader && html`<span class="badge leader">leader</span>`}
        <code>${n.Address}</code>
        <span class="muted">${n.Datacenter}</span>
        <${CheckCounts} passing=${n.ChecksPassing} warning=${n.ChecksWarning} critical=${n.ChecksCritical} />
        <span class="instances">${n.ServiceCount} ${n.ServiceCount === 1 ? 'service' : 'services'}</span>
      </li>`)}
    </ul>
    ${more}
    <details class="members">
      <summary>Gossip members (${members.length})</summary>
      <table>
        <thead><tr><th>Node</th><th>Address</th><th>Status</th><th>Type</th></tr></thead>
        <tbody>${members.map((m) => html`<tr>
          <td>${m.Name}</td><td><code>${m.Addr}:${m.Port}</code></td>
          <td>${['none', 'alive', 'leaving', 'left', 'failed'][m.Status] || m.Status}</td>
          <td>${m.Tags?.role === 'consul' ? 'server' : 'client'}</td></tr>`)}</tbody>
      </table>
    </details>
  </section>`;
}

const health = (n) => (n.ChecksCritical > 0 ? 'critical' : n.ChecksWarning > 0 ? 'warning' : 'passing');

const TABS = [['health-checks', 'Health checks'], ['services', 'Services'], ['lock-sessions', 'Lock sessions']];

export function Node({ dc, node, tab }) {
  const { data, error, notFound } = useLive(`/v1/internal/ui/node/${encodeURIComponent(node)}`, dc);
  const current = TABS.some(([t]) => t === tab) ? tab : 'health-checks';
  return html`<section>
    <p class="crumbs"><${Link} href=${url(dc, 'nodes')}>Nodes<//> /</p>
    <h1>${node}</h1>
    <${ErrorNote} error=${error} />
    ${notFound && html`<p class="empty">No node ${node} in ${dc}.</p>`}
    ${data && html`<p class="summary"><${Status} status=${worst(data.Checks)} />
      ${' '}<code>${data.Address}</code> <span class="muted">${data.Datacenter}</span></p>`}
    <nav class="tabs" aria-label="node">
      ${TABS.map(([t, label]) => html`<${Link} href=${url(dc, 'nodes', node, t)}
        aria-current=${t === current ? 'page' : undefined}>${label}<//>`)}
    </nav>
    ${data && current === 'health-checks' && html`<${CheckList} checks=${data.Checks} />`}
    ${data && current === 'services' && html`<${NodeServices} dc=${dc} services=${data.Services} />`}
    ${current === 'lock-sessions' && html`<${Sessions} dc=${dc} node=${node} />`}
  </section>`;
}

function NodeServices({ dc, services }) {
  if (services.length === 0) return html`<p class="empty">No services on this node.</p>`;
  return html`<ul class="rows" aria-label="services on the node">
    ${services.map((s) => html`<li class="row">
      <${Link} class="name" href=${url(dc, 'services', s.Service, 'instances')}>${s.Service}<//>
      <span class="muted">${s.ID}</span>
      <code>${s.Address || '(node address)'}:${s.Port}</code>
      <${Tags} tags=${s.Tags} />
    </li>`)}
  </ul>`;
}

function Sessions({ dc, node }) {
  const { data, error } = useLive(`/v1/session/node/${encodeURIComponent(node)}`, dc);
  const [failure, setFailure] = useState(null);
  const destroy = async (id) => {
    if (!confirm(`Destroy session ${id}? Locks it holds are released.`)) return;
    try {
      await api('PUT', `/v1/session/destroy/${encodeURIComponent(id)}`, { dc });
      setFailure(null);
    } catch (e) { setFailure(e); }
  };
  return html`<div>
    <${ErrorNote} error=${error || failure} />
    ${data && data.length === 0 && html`<p class="empty">No sessions on this node.</p>`}
    <ul class="cards" aria-label="sessions">
      ${(data || []).map((s) => html`<li class="card session" data-session=${s.ID}>
        <div class="card-head">
          <strong>${s.Name || '(no name)'}</strong> <code>${s.ID}</code>
          <button type="button" class="danger" onClick=${() => destroy(s.ID)}>Destroy</button>
        </div>
        <p class="muted">behavior ${s.Behavior}${s.TTL ? `, TTL ${s.TTL}` : ''}, lock delay
          ${' '}${(s.LockDelay / 1e9).toFixed(0)}s, checks ${[...(s.NodeChecks || []), ...(s.ServiceChecks || []).map((c) => c.ID)].join(', ') || 'none'}</p>
      </li>`)}
    </ul>
  </div>`;
}
