// Progress of a restore counts bytes once they are durable: the written
// bytes are synced every SYNC_EVERY bytes and at the end, then reported, so a
// progress bar at 100% means the data is on disk.

/** Bytes written between two syncs (and progress reports) of a restore. */
export const SYNC_EVERY = 64 << 20;

/**
 * Reports written bytes only once a sync that covers them succeeded. The
 * writer whose write crosses SYNC_EVERY waits for that sync; the others go
 * on writing.
 */
export class DurableProgress {
  private pending = 0;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly sync: () => Promise<void>,
    private readonly report?: (bytes: number) => void,
  ) {}

  async wrote(n: number): Promise<void> {
    this.pending += n;
    if (this.pending < SYNC_EVERY || this.syncing) return;
    const covered = this.pending;
    this.pending = 0;
    this.syncing = this.sync().then(() => this.report?.(covered));
    try {
      await this.syncing;
    } finally {
      this.syncing = undefined;
    }
  }

  async finish(): Promise<void> {
    await this.syncing?.catch(() => undefined);
    const covered = this.pending;
    this.pending = 0;
    await this.sync();
    if (covered > 0) this.report?.(covered);
  }
}
