// Test-only fault injection: VSNAP_FAULT=<point> makes the process die at that
// point, to reach crash windows a random kill rarely hits (docs/reliability.md
// lists the points; test/crash/faults.test.ts drives them). On the ground
// floor because both the coordinator and the workers call it: a worker must
// not load the coordinator's modules to reach a test hook.
export function maybeFault(point: string): void {
  if (process.env.VSNAP_FAULT === point) process.kill(process.pid, 'SIGKILL');
}
