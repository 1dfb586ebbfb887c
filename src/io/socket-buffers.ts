// Kernel buffer sizes of the worker data link (native/socket_buffers.c):
// with the default send buffer (~208 KiB) a 1 MiB frame leaves in many small
// writes, each waiting for the worker to drain the socket.
import { addonLoader } from './native-addon.js';

interface Native {
  setSocketBuffers(fd: number, send: number, receive: number): number;
  getSocketBuffers(fd: number): [number, number];
}

const load = addonLoader<Native>('vsnap_native', 'socket buffer sizes');

/** Room for a few 1 MiB frames in flight (the kernel caps it at net.core.[rw]mem_max). */
export const LINK_SOCKET_BUFFER = 4 * 1024 * 1024;

function validFd(fd: number | undefined): fd is number {
  return fd !== undefined && Number.isInteger(fd) && fd >= 0;
}

/**
 * Ask for larger send and receive buffers on a socket descriptor; returns 0
 * or the errno. Best effort, by design: the link works with any size, only
 * slower, so callers ignore a descriptor that is not a socket (ENOTSOCK) or
 * a refusal.
 */
export function enlargeSocketBuffers(fd: number | undefined, bytes = LINK_SOCKET_BUFFER): number {
  return setSocketBuffers(fd, bytes, bytes);
}

/** Set one direction's buffer, or both (0 leaves a direction as it is); 0 or the errno, -1 for no descriptor; best effort as above. */
export function setSocketBuffers(fd: number | undefined, send: number, receive: number): number {
  if (!validFd(fd)) return -1;
  return load().setSocketBuffers(fd, send, receive);
}

/** The kernel's sizes of a socket's buffers (as it reports them: twice what was asked), or undefined for no socket. */
export function socketBuffers(fd: number | undefined): { send: number; receive: number } | undefined {
  if (!validFd(fd)) return undefined;
  const [send, receive] = load().getSocketBuffers(fd);
  return send < 0 ? undefined : { send, receive };
}
