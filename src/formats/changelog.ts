// The change log (<partition>.clog), docs/formats.md "Change log": the public
// face of src/formats/changelog/, which is split by concern:
//   codec.ts     byte layout, geometry, header and record encoding and checks (pure)
//   recovery.ts  the open-time scan and torn-tail rules, verify's record pass
//   log.ts       the ChangeLog class: open/create, reads, batched appends, merge, verify
//   slots.ts     many records per read, in slot order, crc-checked (restore)
// Importers outside the folder use this module.
export { ChangeLog } from './changelog/log.js';
export {
  CLOG_MAGIC,
  CLOG_VERSION,
  CLOG_HEADER_SIZE,
  RECORD_HEADER_SIZE,
  RECORD_MAGIC,
  MAX_PARTITION_ID_BYTES,
  MIN_BLOCK_SIZE,
  MAX_BLOCK_SIZE,
  changeLogRecordSize,
  changeLogSlotOffset,
  changeLogRecordCount,
  encodeChangeLogHeader,
  decodeChangeLogHeader,
  type ChangeLogHeader,
  type ChangeLogExpect,
  type ChangeLogOpenOptions,
  type ChangeLogRecord,
  type VerifyResult,
} from './changelog/codec.js';
export { readCheckedSlots, type CheckedSlots, type SlotReadableLog } from './changelog/slots.js';
