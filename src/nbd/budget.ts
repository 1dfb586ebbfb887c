// Byte accounting for the limits in limits.ts: one SharedBudget per server,
// one ConnectionLedger per connection. A request's bytes are reserved before
// its payload is read (WRITE) or its data is fetched (READ); when it is
// answered they become reply bytes, held until the client has taken them.

interface Waiter {
  n: number;
  grant: (taken: boolean) => void;
}

/** A wait for shared bytes; cancel() resolves it with false and gives nothing. */
export interface Waiting {
  readonly taken: Promise<boolean>;
  cancel(): void;
}

/** Bytes held across all connections, handed out in arrival order. */
export class SharedBudget {
  private held = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly limit: number) {}

  get used(): number {
    return this.held;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Take n bytes now if nobody waits before us and they fit. When nothing is
   * held at all, any size fits: a request larger than the limit then runs alone
   * rather than waiting forever.
   */
  tryTake(n: number): boolean {
    if (this.waiters.length > 0 || !this.fits(n)) return false;
    this.held += n;
    return true;
  }

  /** Wait for n bytes behind earlier waiters. */
  wait(n: number): Waiting {
    let waiter!: Waiter;
    const taken = new Promise<boolean>((resolve) => (waiter = { n, grant: resolve }));
    this.waiters.push(waiter);
    this.grant();
    return {
      taken,
      cancel: () => {
        const i = this.waiters.indexOf(waiter);
        if (i < 0) return;
        this.waiters.splice(i, 1);
        waiter.grant(false);
        // The head may have changed: the next waiter may fit now.
        this.grant();
      },
    };
  }

  /** Count bytes that already exist (a reply larger than what its request reserved); never waits. */
  force(n: number): void {
    this.held += n;
  }

  release(n: number): void {
    this.held -= n;
    if (this.held < 0) throw new Error(`NBD byte accounting went negative (${this.held})`);
    this.grant();
  }

  private fits(n: number): boolean {
    return this.held === 0 || this.held + n <= this.limit;
  }

  private grant(): void {
    while (this.waiters.length > 0 && this.fits(this.waiters[0].n)) {
      const w = this.waiters.shift()!;
      this.held += w.n;
      w.grant(true);
    }
  }
}

/**
 * One connection's share: request bytes reserved (held until the request is
 * done, even after the connection is dropped, since the device still holds
 * them) and reply bytes queued but not yet taken by the client.
 */
export class ConnectionLedger {
  private request = 0;
  private reply = 0;
  private closed = false;

  constructor(
    private readonly shared: SharedBudget,
    private readonly requestCap: number,
  ) {}

  get requestBytes(): number {
    return this.request;
  }

  get replyBytes(): number {
    return this.reply;
  }

  /** Whether this connection may reserve n more request bytes; one request may always run alone. */
  fits(n: number): boolean {
    return this.request === 0 || this.request + n <= this.requestCap;
  }

  /** Record n request bytes the caller has taken from the shared budget. */
  reserved(n: number): void {
    this.request += n;
  }

  /** A request is done (answered, failed, or never started): its bytes go back. */
  done(n: number): void {
    this.request -= n;
    this.shared.release(n);
  }

  /** A reply of n bytes is queued for the client. */
  replyQueued(n: number): void {
    if (this.closed) return;
    this.reply += n;
    this.shared.force(n);
  }

  /** The socket has taken n reply bytes (or discarded them). */
  replyTaken(n: number): void {
    if (this.closed) return;
    this.reply -= n;
    this.shared.release(n);
  }

  /** The socket is gone: its queued replies are dropped. Requests still running keep their bytes until done(). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const r = this.reply;
    this.reply = 0;
    if (r > 0) this.shared.release(r);
  }
}
