/**
 * Saving received files: a sanitised base name (no path separators, no control characters, no leading dot) in
 * the downloads folder, never overwriting an existing file (PROFILE §9).
 *
 * @example
 * ```ts
 * sanitizeFileName("../../etc/passwd"); // "passwd"
 * await saveDownload("./socp-downloads", "report.pdf", bytes); // "./socp-downloads/report.pdf", or "report (1).pdf"
 * ```
 * @module
 */
import { join } from "node:path";

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

/** Write `bytes` under a sanitised, unused name in `dir` (created if missing). Returns the path written. */
export async function saveDownload(dir: string, name: string, bytes: Uint8Array): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const safe = sanitizeFileName(name);
  const dot = safe.lastIndexOf(".");
  const stem = dot > 0 ? safe.slice(0, dot) : safe;
  const ext = dot > 0 ? safe.slice(dot) : "";
  for (let i = 0; i < 10_000; i++) {
    const path = join(dir, i === 0 ? safe : `${stem} (${i})${ext}`);
    try {
      await Deno.writeFile(path, bytes, { createNew: true, mode: 0o644 });
      return path;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
  throw new Error(`no free name for ${safe} in ${dir}`);
}
