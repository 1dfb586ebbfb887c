// The freeze gate of design.md §6: while frozen, new writes wait at the gate;
// freeze() resolves once the writes already past it have finished. Used by the
// coordinator (volume writes it routes) and by each worker (its own writes),
// so it sits on the ground floor below both.
export class WriteGate {
  private closed: Promise<void> | null = null;
  private reopen: (() => void) | null = null;
  private inflight = 0;
  private drainWaiters: (() => void)[] = [];

  async enter(): Promise<void> {
    while (this.closed) await this.closed;
    this.inflight++;
  }

  leave(): void {
    this.inflight--;
    if (this.inflight === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  get frozen(): boolean {
    return this.closed !== null;
  }

  async freeze(): Promise<void> {
    if (!this.closed) this.closed = new Promise((r) => (this.reopen = r));
    if (this.inflight > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
  }

  thaw(): void {
    const r = this.reopen;
    this.closed = null;
    this.reopen = null;
    r?.();
  }
}
