/**
 * archive: the client side of file archives. Turns a directory tree into a payload stream (the contents of its
 * files) and a catalog (its entries, with their offsets in the payload); restores a tree from the two, or makes
 * the POSIX pax tar stream the archive stands for; parses tar streams (the older layout) and extracts them.
 * This is the one place besides the local storage backend that touches the local filesystem, because backup
 * sources and restore targets are local. Layer: may import core and lib (see docs/architecture.md).
 */
export { createArchiveStream, createArchiveStreamInWorker, type TarCreateOptions, type TarCreateResult, type PayloadPiece, type ReusePiece, type PreviousArchive } from './tar-create.ts';
export { assembleTar, assembledSize, catalogEntries, type PayloadChunk } from './tar-assemble.ts';
export { parseTar, type ParsedEntry } from './tar-parse.ts';
export { extractArchiveInWorker, extractEntries, extractTar, extractTarInWorker, type ExtractOptions, type ExtractResult } from './tar-extract.ts';
export { encodeCatalog, decodeCatalog, catalogPayloadRanges, catalogContentBytes, CatalogIndex, selectCatalog, catalogRanges, CatalogBuilder, type CatalogEntry, type CatalogPieces } from './catalog.ts';
export { compileExcludes, type ExcludeMatcher } from './glob.ts';
export { treeSizeInWorker } from './tree-size.ts';
export type { TarEntry, EntryType } from './tar-format.ts';
