// A list of health checks as the pages show them: status, name, ID, type,
// notes and the full output.
import { html, Status } from './lib.mjs';

export function CheckList({ checks, empty = 'No health checks.' }) {
  if (!checks || checks.length === 0) return html`<p class="empty">${empty}</p>`;
  return html`<ul class="checks">
    ${checks.map((c) => html`<li class="check" data-check=${c.CheckID}>
      <div class="check-head">
        <${Status} status=${c.Status} />
        <strong>${c.Name || c.CheckID}</strong>
        <span class="muted">${c.CheckID}${c.Type ? ` · ${c.Type}` : ''}${c.ServiceName ? ` · service ${c.ServiceName}` : ' · node check'}</span>
      </div>
      ${c.Notes && html`<p class="notes">${c.Notes}</p>`}
      ${c.Output
        ? html`<pre class="output" aria-label="output of ${c.CheckID}">${c.Output}</pre>`
        : html`<p class="muted">No output.</p>`}
    </li>`)}
  </ul>`;
}

// passing/warning/critical counts of `checks`, as badges.
export function CheckCounts({ passing = 0, warning = 0, critical = 0 }) {
  return html`<span class="counts">
    ${passing > 0 && html`<${Status} status="passing" count=${passing} />`}
    ${warning > 0 && html`<${Status} status="warning" count=${warning} />`}
    ${critical > 0 && html`<${Status} status="critical" count=${critical} />`}
    ${passing + warning + critical === 0 && html`<span class="muted">no checks</span>`}
  </span>`;
}
