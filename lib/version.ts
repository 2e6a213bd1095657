/** The program's version and software string: defined in lib/protocol/version.ts (the lowest layer). */
export { SOFTWARE, VERSION } from "./protocol/version.ts";
