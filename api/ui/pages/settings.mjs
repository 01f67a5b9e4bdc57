// Settings: the ACL token the UI sends as X-Consul-Token, kept in this
// browser only (localStorage).
import { useState } from 'preact/hooks';
import { html, token } from '../lib.mjs';

export function Settings() {
  const [value, setValue] = useState(token.get());
  const [saved, setSaved] = useState(false);
  const save = (e) => {
    e.preventDefault();
    token.set(value.trim());
    setSaved(true);
  };
  return html`<section>
    <h1>Settings</h1>
    <form class="kv-form" onSubmit=${save}>
      <label class="block">ACL token
        <input type="password" autocomplete="off" value=${value}
          onInput=${(e) => { setValue(e.currentTarget.value); setSaved(false); }} /></label>
      <p class="muted">Kept in this browser only and sent with every request as
        ${' '}<code>X-Consul-Token</code>. Leave it empty to send none.</p>
      <div class="controls"><button type="submit">Save</button>
        <button type="button" onClick=${() => { setValue(''); token.set(''); setSaved(true); }}>Clear</button></div>
      ${saved && html`<p class="ok" role="status">Saved.</p>`}
    </form>
  </section>`;
}
