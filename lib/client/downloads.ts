/**
 * Saving received files (Deno only): a sanitised base name (no path separators, no control characters, no leading dot) in
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
import { sanitizeFileName } from "./filenames.ts";

export { sanitizeFileName };

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
