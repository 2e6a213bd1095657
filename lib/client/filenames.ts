/**
 * Received files' names made safe (PROFILE §9): a sanitised base name with no path separators, no control or
 * bidi characters, no leading dot. Browser-safe; lib/client/downloads.ts writes them to disk in Deno.
 *
 * @example
 * ```ts
 * sanitizeFileName("../../etc/passwd"); // "passwd"
 * ```
 * @module
 */

/** A safe base name for `name` (never empty, at most 200 UTF-8 bytes). */
export function sanitizeFileName(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  let clean = base
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, "")
    .replace(/[<>:"|?*]/g, "_")
    .replace(/^[.\s]+/, "")
    .replace(/[.\s]+$/, "")
    .trim();
  const enc = new TextEncoder();
  while (enc.encode(clean).length > 200) clean = clean.slice(0, -1);
  return clean || "download";
}
