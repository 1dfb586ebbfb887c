// Recognising an image format's header at the start of a backing file
// (design.md §3): vsnap serves a backing file's bytes as they are, so a
// qcow2 or VMDK listed as a "raw image" would be served as its metadata and
// clusters, and a guest writing to it would corrupt the image. Pure: the
// caller reads the first HEADER_PROBE_BYTES of the file (one small read per
// distinct file) and asks here.
//
// Each signature was checked against QEMU's sources (block/qcow2.h QCOW_MAGIC,
// block/qed.h QED_MAGIC, block/vmdk.c VMDK3/VMDK4_MAGIC and vmdk_probe,
// block/vhdx-probe.c, block/vdi.c VDI_SIGNATURE and vdi_probe,
// crypto/block-luks.c qcrypto_block_luks_magic, block/vpc.c) and against files
// `qemu-img create -f <fmt>` makes (test/image-headers.test.ts). Like QEMU's
// probes, only bytes at file offset 0 are looked at.

/** Enough for every signature below (VDI's is at 0x40, a VMDK descriptor's first lines fit). */
export const HEADER_PROBE_BYTES = 512;

export interface ImageHeader {
  /** qemu-img's name of the format ("qcow2", "vmdk", ...). */
  format: string;
  /** What was found where, for the message: `"QFI\xfb" at byte 0`. */
  evidence: string;
}

function startsWith(buf: Buffer, at: number, sig: Buffer | string): boolean {
  const s = typeof sig === 'string' ? Buffer.from(sig, 'latin1') : sig;
  return buf.length >= at + s.length && buf.subarray(at, at + s.length).equals(s);
}

/** A signature as people read it: printable ASCII kept, other bytes as \xNN. */
function shown(sig: Buffer | string): string {
  const s = typeof sig === 'string' ? Buffer.from(sig, 'latin1') : sig;
  let out = '';
  for (const b of s) out += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return `"${out}"`;
}

const QCOW = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // 'Q' 'F' 'I' 0xfb, big-endian QCOW_MAGIC
const QED = Buffer.from([0x51, 0x45, 0x44, 0x00]); // "QED\0", little-endian QED_MAGIC
const LUKS = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]); // "LUKS" 0xba 0xbe (LUKS1 and LUKS2 primary header)
const VDI_SIGNATURE = 0xbeda107f; // little-endian u32 at 0x40
const VDI_SIGNATURE_AT = 0x40;

/**
 * A VMDK text descriptor (monolithicFlat, twoGbMaxExtent*, vmfs...): the
 * "# Disk DescriptorFile" comment qemu-img and VMware write, or, as QEMU's
 * probe accepts, comment and blank lines followed by a `version=1|2|3` line.
 */
function vmdkDescriptor(buf: Buffer): string | undefined {
  const text = buf.toString('latin1');
  if (text.startsWith('# Disk DescriptorFile')) return '"# Disk DescriptorFile" at byte 0';
  const lines = text.split('\n');
  // The last piece may be cut by the probe size: it decides nothing.
  for (const raw of lines.slice(0, -1)) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.startsWith('#') || /^ *$/.test(line)) continue;
    return /^version=[123]$/.test(line) ? `a VMDK descriptor ("${line}" line) at byte 0` : undefined;
  }
  return undefined;
}

/** The image format whose header starts `buf` (the file's first bytes), or undefined for raw data. */
export function detectImageHeader(buf: Buffer): ImageHeader | undefined {
  if (startsWith(buf, 0, QCOW)) {
    // qcow (version 1) shares the magic with qcow2 (versions 2 and 3).
    const version = buf.length >= 8 ? buf.readUInt32BE(4) : 0;
    return { format: version === 1 ? 'qcow' : 'qcow2', evidence: `${shown(QCOW)} at byte 0${version ? `, version ${version}` : ''}` };
  }
  if (startsWith(buf, 0, QED)) return { format: 'qed', evidence: `${shown(QED)} at byte 0` };
  if (startsWith(buf, 0, 'KDMV')) return { format: 'vmdk', evidence: '"KDMV" at byte 0, a sparse extent' };
  if (startsWith(buf, 0, 'COWD')) return { format: 'vmdk', evidence: '"COWD" at byte 0, a VMware 3 sparse extent' };
  if (startsWith(buf, 0, 'vhdxfile')) return { format: 'vhdx', evidence: '"vhdxfile" at byte 0' };
  if (startsWith(buf, 0, LUKS)) {
    const version = buf.length >= 8 ? buf.readUInt16BE(6) : 0;
    return { format: 'luks', evidence: `${shown(LUKS)} at byte 0${version ? `, LUKS${version}` : ''}` };
  }
  if (buf.length >= VDI_SIGNATURE_AT + 4 && buf.readUInt32LE(VDI_SIGNATURE_AT) === VDI_SIGNATURE) {
    // QEMU's probe trusts the signature alone; the "<<< ... >>>" banner before it is free text.
    const banner = /^<<< [\x20-\x7e]{1,56} >>>/.exec(buf.toString('latin1', 0, VDI_SIGNATURE_AT))?.[0];
    return { format: 'vdi', evidence: `signature 0xbeda107f at byte 0x40${banner ? ` after "${banner}"` : ''}` };
  }
  // A dynamic or differencing VHD starts with a copy of its footer; a fixed VHD
  // is raw data followed by a footer, and is left alone (it is raw up to there).
  if (startsWith(buf, 0, 'conectix')) return { format: 'vpc', evidence: '"conectix" at byte 0, a dynamic VHD' };
  const desc = vmdkDescriptor(buf);
  if (desc) return { format: 'vmdk', evidence: desc };
  return undefined;
}

/** The refusal's wording (design.md §3): the format, where it was seen, and the fix. */
export function describeImageHeader(file: string, h: ImageHeader): string {
  const open = h.format === 'luks' ? ', or open it with `cryptsetup open` and list the /dev/mapper device' : '';
  return (
    `starts with a ${h.format} image header (${h.evidence}): vsnap reads backing files as raw bytes; ` +
    `convert it with \`qemu-img convert -O raw ${file} ${file}.raw\` and list the raw file${open}; ` +
    `or add "format": "raw" to this extent if its bytes really are raw data`
  );
}
