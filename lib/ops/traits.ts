// What the replay tools need to know of a scheme, asked of the addon's registry (never by name).
import { native } from '../native.js';

const MIN_ORDER_SCHEMES: ReadonlySet<string> = new Set(
  native
    .schemes()
    .filter((s) => s.pincount === 'large-folios')
    .map((s) => s.name),
);

/** Whether `pincountMinOrder` (the kernel's large-folio threshold) changes what `scheme` does. @internal */
export function takesPincountMinOrder(scheme: string): boolean {
  return MIN_ORDER_SCHEMES.has(scheme);
}
