// Kernel buffer sizes of the worker data link (native/socket_buffers.c):
// with the default send buffer (~208 KiB) a 1 MiB frame leaves in many small
// writes, each waiting for the worker to drain the socket.
import { addonLoader } from './native-addon.js';

interface Native {
  setSocketBuffers(fd: number, bytes: number): number;
}

const load = addonLoader<Native>('vsnap_native', 'socket buffer sizes');

/** Room for a few 1 MiB frames in flight (the kernel caps it at net.core.[rw]mem_max). */
export const LINK_SOCKET_BUFFER = 4 * 1024 * 1024;

/**
 * Ask for larger send and receive buffers on a socket descriptor; returns 0
 * or the errno. Best effort, by design: the link works with any size, only
 * slower, so callers ignore a descriptor that is not a socket (ENOTSOCK) or
 * a refusal.
 */
export function enlargeSocketBuffers(fd: number | undefined, bytes = LINK_SOCKET_BUFFER): number {
  if (fd === undefined || !Number.isInteger(fd) || fd < 0) return -1;
  return load().setSocketBuffers(fd, bytes);
}
