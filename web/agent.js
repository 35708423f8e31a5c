// Entry of the agents' console (`/`).
import { html, mount } from './lib/html.js';
import { loadWords } from './lib/i18n.js';
import { App } from './agent/app.js';

await loadWords();
mount(html`<${App} />`);
