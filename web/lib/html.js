// The console's view layer: Preact renders from state, htm writes the
// markup as tagged templates (no JSX, so no build step). Text is always
// inserted as text: nothing a user typed is ever parsed as HTML.
import { h, render } from '../vendor/preact.mjs';
import htm from '../vendor/htm.mjs';

export const html = htm.bind(h);
export { render };
export {
  useState, useEffect, useLayoutEffect, useReducer, useRef, useMemo, useCallback,
} from '../vendor/hooks.mjs';

/** Renders a page's root component in place of the "loading" text. */
export function mount(vnode, id = 'app') {
  const root = document.getElementById(id);
  root.textContent = '';
  render(vnode, root);
}
