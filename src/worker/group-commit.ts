// Group commit of copy-on-write records (design.md §5): whatever copies queue
// while the previous batch is being synced go out together, one append and
// one fdatasync per log. A write waits only for the batch holding its copy.
import type { ChangeLog, ChangeLogRecord } from '../formats/changelog.js';

interface QueuedCopy {
  log: ChangeLog;
  records: ChangeLogRecord[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class GroupCommit {
  private queue: QueuedCopy[] = [];
  private pumping = false;

  /** Resolves once the records are durable in the log (or rejects with the batch's error). */
  append(log: ChangeLog, records: ChangeLogRecord[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ log, records, resolve, reject });
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length) {
        const items = this.queue.splice(0);
        const byLog = new Map<ChangeLog, QueuedCopy[]>();
        for (const it of items) byLog.set(it.log, [...(byLog.get(it.log) ?? []), it]);
        for (const [log, group] of byLog) {
          try {
            await log.appendBatch(group.flatMap((g) => g.records));
            for (const g of group) g.resolve();
          } catch (err) {
            for (const g of group) g.reject(err);
          }
        }
      }
    } finally {
      this.pumping = false;
    }
  }
}
