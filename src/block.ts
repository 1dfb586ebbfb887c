// The one interface every block layer offers (style.md §4): the live volume,
// a read-only snapshot view, and any test backend. The NBD server and the CLI
// sit on top of it. Offsets and lengths are bytes; callers have checked that
// offset + length <= size (bounds are checked once, in the layer on top).

/** errno names the NBD layer knows how to put on the wire. */
export type BlockErrno = 'EPERM' | 'EIO' | 'ENOMEM' | 'EINVAL' | 'ENOSPC' | 'EOVERFLOW' | 'ENOTSUP' | 'ESHUTDOWN';

/** An error a block layer throws to fail one request; `errno` travels to the client, `message` is logged. */
export class BlockError extends Error {
  constructor(
    readonly errno: BlockErrno,
    message: string,
  ) {
    super(message);
    this.name = 'BlockError';
  }
}

/** WRITE_ZEROES flags: NO_HOLE keeps the range allocated; fast asks for ENOTSUP unless zeroing writes no data. */
export interface ZeroOptions {
  noHole?: boolean;
  fast?: boolean;
}

/** One run of a block-status answer; flags use NBD's base:allocation bits. */
export interface BlockExtent {
  length: number;
  /** bit 0: hole (unallocated), bit 1: reads as zeroes. */
  flags: number;
}

export interface BlockDevice {
  readonly size: number;
  readonly readOnly: boolean;
  /** Preferred I/O size in bytes (the COW block size for vsnap). */
  readonly preferredBlockSize: number;
  /** Called at NBD_OPT_GO/INFO (optional): rejects when the export cannot be used, saying why (the option fails). */
  ready?(): Promise<void>;
  read(offset: number, length: number): Promise<Buffer>;
  /** read() as a chunk list (optional): the data as it arrived from where it was read, not joined. */
  readChunks?(offset: number, length: number): Promise<Buffer[]>;
  /** fua: the data is durable when the promise resolves. */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  /** write() of a payload kept as the chunks it arrived in (optional: the NBD server joins them for devices without it). */
  writeChunks?(offset: number, chunks: readonly Buffer[], fua: boolean): Promise<void>;
  /**
   * Make the range read as zeroes. With opts.fast (only asked of a device
   * with canFastZero) fail with ENOTSUP, quickly, unless it can be done
   * without writing data.
   */
  zero(offset: number, length: number, fua: boolean, opts?: ZeroOptions): Promise<void>;
  /** Whether zero() answers opts.fast itself; otherwise the NBD layer refuses every fast zero. */
  readonly canFastZero?: boolean;
  /** Advisory discard (the range may read as anything after it); never loses a snapshot's view. */
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  /** Everything acknowledged so far is durable when this resolves. */
  flush(): Promise<void>;
  /** Allocation map from offset; at least one extent, consecutive, total <= length. */
  blockStatus(offset: number, length: number): Promise<BlockExtent[]>;
  /**
   * Metadata contexts offered besides base:allocation (which is always
   * `blockStatus`), by the names NBD_OPT_LIST_META_CONTEXT lists, e.g.
   * `qemu:dirty-bitmap:<snap>`. Absent: base:allocation only.
   */
  metaContexts?(): string[];
  /**
   * The context a client's SET_META_CONTEXT names: a listed name or an alias
   * the device accepts (a snapshot id for its name); undefined when not offered.
   */
  metaContext?(name: string): MetaContext | undefined;
}

/** One selected metadata context other than base:allocation. */
export interface MetaContext {
  /** The bits this context's extent flags may carry (the rest are dropped). */
  readonly flagMask: number;
  /** Same rules as BlockDevice.blockStatus, with this context's flags; a short answer is allowed. */
  status(offset: number, length: number): Promise<BlockExtent[]>;
}

/** What an NBD server serves: a set of named exports. */
export interface ExportProvider {
  /** Names for NBD_OPT_LIST. */
  list(): string[];
  /** Resolve a client's export name ("" is the default); undefined if unknown. */
  open(name: string): BlockDevice | undefined;
}
