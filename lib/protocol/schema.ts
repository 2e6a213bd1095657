/**
 * Tiny validators for payload shapes. Each returns the typed value or a string naming what is wrong
 * (the `detail` of an `ERROR UNKNOWN_TYPE`). Extra fields are allowed and kept, so newer peers interoperate.
 *
 * @example
 * ```ts
 * const check = object({ name: string(1, 64), size: integer(0) });
 * check({ name: "a", size: 1 }, "payload"); // { name: "a", size: 1 }
 * check({ name: "" }, "payload"); // "payload.name must be a string of 1 to 64 characters"
 * ```
 * @module
 */

/** A validator: a typed value, or an error message. */
export type Check<T> = (v: unknown, path: string) => T | Invalid;

/** A validation failure with a human-readable message. */
export class Invalid {
  constructor(readonly message: string) {}
}

/** A string of `min`..`max` UTF-16 code units. */
export function string(min = 0, max = Infinity): Check<string> {
  return (v, path) =>
    typeof v === "string" && v.length >= min && v.length <= max ? v : new Invalid(
      `${path} must be a string of ${min}${max === Infinity ? " or more" : ` to ${max}`} characters`,
    );
}

/** A safe integer in `min`..`max`. */
export function integer(min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): Check<number> {
  return (v, path) =>
    typeof v === "number" && Number.isSafeInteger(v) && v >= min && v <= max
      ? v
      : new Invalid(`${path} must be an integer from ${min} to ${max}`);
}

/** A boolean. */
export const boolean: Check<boolean> = (v, path) =>
  typeof v === "boolean" ? v : new Invalid(`${path} must be true or false`);

/** One of the listed string literals. */
export function literal<T extends string>(...values: T[]): Check<T> {
  return (v, path) =>
    typeof v === "string" && (values as string[]).includes(v)
      ? v as T
      : new Invalid(`${path} must be one of ${values.map((x) => JSON.stringify(x)).join(", ")}`);
}

/** Any JSON object (used for free-form `meta`). */
export const anyObject: Check<Record<string, unknown>> = (v, path) =>
  v !== null && typeof v === "object" && !Array.isArray(v)
    ? v as Record<string, unknown>
    : new Invalid(`${path} must be an object`);

/** An array of at most `max` items, each checked. */
export function array<T>(item: Check<T>, max = 10_000): Check<T[]> {
  return (v, path) => {
    if (!Array.isArray(v)) return new Invalid(`${path} must be an array`);
    if (v.length > max) return new Invalid(`${path} has ${v.length} items; at most ${max} allowed`);
    for (let i = 0; i < v.length; i++) {
      const r = item(v[i], `${path}[${i}]`);
      if (r instanceof Invalid) return r;
    }
    return v as T[];
  };
}

/** Any JSON value, unchecked (for fields read later by a total reader, PROFILE §15). */
export const anything: Check<unknown> = (v) => v;

/** `null` or a value that passes `check` (some deployed peers send `null` for absent). */
export function nullable<T>(check: Check<T>): Check<T | null> {
  return (v, path) => v === null ? null : check(v, path);
}

/** Marks a field as optional inside {@linkcode object}. */
export interface Optional<T> {
  optional: Check<T>;
}

/** Make a field optional (absent or undefined is fine; present must pass). */
export function optional<T>(check: Check<T>): Optional<T> {
  return { optional: check };
}

type Field = Check<unknown> | Optional<unknown>;
type Shape = Record<string, Field>;
type Out<S extends Shape> =
  & { [K in keyof S as S[K] extends Check<unknown> ? K : never]: S[K] extends Check<infer T> ? T : never }
  & {
    [K in keyof S as S[K] extends Optional<unknown> ? K : never]?: S[K] extends Optional<infer T> ? T : never;
  };

/** An object with the given fields (others allowed). */
export function object<S extends Shape>(shape: S): Check<Out<S>> {
  const entries = Object.entries(shape);
  return (v, path) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      return new Invalid(`${path} must be an object`);
    }
    const o = v as Record<string, unknown>;
    for (const [k, f] of entries) {
      if (typeof f === "function") {
        if (!(k in o)) return new Invalid(`${path}.${k} is missing`);
        const r = f(o[k], `${path}.${k}`);
        if (r instanceof Invalid) return r;
      } else if (o[k] !== undefined) {
        const r = f.optional(o[k], `${path}.${k}`);
        if (r instanceof Invalid) return r;
      }
    }
    return o as Out<S>;
  };
}
