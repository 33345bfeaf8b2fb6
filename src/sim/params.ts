/**
 * The host and QEMU facts the simulator's model of one migration depends on, beyond the guest's
 * page classes and the link. Each default says where it comes from: measured on this project's
 * TCG lab, read from QEMU's sources, or taken from the literature where the lab cannot measure it
 * (no KVM, no fast NICs). Every one can be overridden per run.
 */
export interface ModelParams {
  /**
   * Streams carrying RAM: 1 = QEMU's single migration stream; n > 1 = the `multifd` capability
   * with `multifd-channels` = n (QEMU's default when multifd is on is 2).
   */
  channels: number;
  /**
   * What one stream can carry, bytes/s, however fast the link: the sending thread copies every
   * page (and TLS/compression would cost more). Default 10 Gbit/s: "the CPU that does the
   * reception is a bottleneck on 10 Gigabit and faster" (QEMU wiki, Features/Migration-Multiple-fds,
   * J. Quintela — the reason multifd exists).
   *
   * Measured in the lab (2026-11-28; QEMU 10.0.2, TCG, 2 cores shared with other work at load
   * average ~12; a 2 GiB guest holding 1.5 GiB of data it does not rewrite (`rate:1536:100`),
   * loopback TCP, no link shaping, max-bandwidth 50 GB/s; one run each):
   *   no multifd: 1654 MiB in 14.1 s = 123 MB/s; multifd 2 channels: 3.46 s = 503 MB/s;
   *   multifd 4 channels: 2.36 s = 738 MB/s.
   * Fit: a multifd channel carries ~250 MB/s here until the two cores run out (4 × 185 MB/s);
   * the single non-multifd stream, which also scans and frames every page in the migration
   * thread, ~125 MB/s — as much as the lab's 1 Gbit link, so on this machine the CPU and the link
   * bind together. These are CPU-starved numbers, not a server's: the default stays 10 Gbit/s.
   *
   * Measured again with the machine otherwise quiet (the validation bench's calibration cells,
   * docs/results-validation: a 512 MiB guest holding 256 MiB it barely rewrites, 25 Gbit link,
   * 4 runs each): one stream 501 MB/s, 4 multifd channels 1157 MB/s together (289 MB/s each) —
   * the 123 MB/s above was the load, not the stream. `sim --validate` on those benches uses them
   * (LAB_STREAM_CAPS, src/bench/sim-results.ts); the default is unchanged.
   */
  channelBps: number;
  /**
   * Guest RAM one thread examines per second for zero pages before sending (bytes/s). QEMU ≥ 9.0
   * does the zero-page check in the multifd threads (`zero-page-detection=multifd`), so with
   * multifd it scales with `channels`. Default 20 GB/s: a memory-bandwidth-bound memcmp on one
   * core — an assumption.
   *
   * Measured in the lab (same conditions as channelBps; idle guests, no multifd): 512 / 1024 /
   * 2048 MiB took 0.88 / 1.41 / 1.97 s with 28.4 / 29.6 / 33.5 k full and 103 / 233 / 491 k zero
   * pages. Less the full pages at 123 MB/s, the extra zero pages cost 0.49 s per 532 MB and
   * 0.43 s per 1057 MB: 1.1–2.5 GB/s — 10–20× slower than assumed, on a starved machine. With
   * 2.5 GB/s the model gets the lab's idle scaling (sim 0.99 / 1.24 / 1.65 s against 0.88 / 1.41 /
   * 1.97; with 20 GB/s 0.82 / 0.87 / 0.92) but `sim --validate docs/results` moves (median total
   * error 3% → 2%, data 1% → 2%, relaxed cells +3 points): the default is kept, pending
   * measurements on an unloaded host. Set it per run (`params.scanBytesPerS`).
   */
  scanBytesPerS: number;
  /**
   * Cost of one dirty-bitmap sync (KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG over every memslot,
   * then the bitmap merge in migration_bitmap_sync), ms per GiB of guest RAM, plus a fixed part.
   * The migration thread sends nothing meanwhile. Default 1 ms/GiB + 0.2 ms: an assumption of the
   * order of a bitmap walk (32 KiB of bitmap per GiB); QEMU added periodic syncs for huge guests
   * because one iteration takes so long (commit 52ac968ab2, "Support periodic RAMBlock dirty bitmap
   * sync"). Set it from your hosts' `trace-event migration_bitmap_sync_end` if you have them.
   */
  syncMsPerGiB: number;
  syncFixedMs: number;
  /**
   * Fixed part of the stop-and-copy besides RAM: stopping vCPUs, device state, the final sync
   * (which adds syncMsPerGiB × RAM) and the destination starting. Default 40 ms, fitted to the
   * lab's pre-copy downtimes (docs/results); per vCPU add `switchMsPerVcpu` (CPU state, ~0.1 ms
   * each — an assumption).
   */
  switchCostMs: number;
  switchMsPerVcpu: number;
  /**
   * Extra stop-and-copy time per multifd channel beyond the first: at the switchover QEMU flushes
   * and syncs every channel. Default 0: the only measurement is the TCG lab's (4 channels a median
   * 43 ms longer than one stream, 23–57 ms: ~14 ms per extra channel, `LAB_SWITCH_MS_PER_EXTRA_CHANNEL`),
   * which the validation of lab runs uses; on KVM hosts it is unmeasured and likely far smaller.
   */
  switchMsPerExtraChannel: number;
  vcpus: number;
  /**
   * Dirty-tracking granularity, bytes (4 KiB on x86; 64 KiB target pages on some POWER/Arm
   * configurations): a write anywhere in a page dirties, and resends, the whole page.
   */
  pageBytes: number;
  /**
   * KVM dirty logging write-protects pages: the first write to a clean page after each sync
   * exits to the host (a write-protection fault), costing the writing vCPU this many µs. It caps
   * how fast each vCPU can dirty *new* pages at 1e6 / cost per second. Default 0 (TCG, where the
   * lab's write rates were measured with logging on); ~1–3 µs per fault under KVM with EPT is the
   * order reported in the dirty-ring work (KVM: "Implement ring-based dirty memory tracking").
   */
  dirtyLogFaultUs: number;
  /**
   * Post-copy: the guest runs on the destination and each vCPU that touches a page not there yet
   * blocks (userfaultfd) until it arrives; the source streams the missing pages in address order
   * from its cursor and sends requested pages first (get_queued_page; the scan then continues after
   * the requested page). One fault costs the vCPU the round trip (link RTT + `faultUs` of
   * userfaultfd handling and the request's path on both sides), the page itself on the link, and —
   * without the `postcopy-preempt` capability — every byte of the background stream already queued
   * ahead of it: "explicitly requested pages need to wait until all other pages already queued are
   * transferred" (libvirt, VIR_MIGRATE_POSTCOPY_PREEMPT). `postcopyQueueBytes` is that backlog:
   * the socket's unsent bytes, which QEMU's blocking writes keep full, plus what TCP small queues
   * let into the qdisc (~1 ms at the pacing rate). Linux autotunes the send buffer to about twice
   * the congestion window — a few hundred KB on a LAN-like link, up to tcp_wmem's 4 MiB on a long
   * fat one. Default 256 KiB (2 ms at 1 Gbit): an assumption, bounded by the lab's sweeping guest,
   * which faults on the kernel's pages while its own follow the stream: its stall after an early
   * switch (adaptive, docs/results-postcopy, 0.6–1.0 s) is 0.5 s simulated with no backlog, 0.7 s
   * with 256 KiB, 1.6 s with 1 MiB. 0 with postcopy-preempt (urgent pages on their own channel).
   *
   * The guest counts as stalled while its vCPUs spend more time blocked on faults than running:
   * a vCPU writing w pages/s of which a share m lands on missing pages runs 1/(w·m) between faults
   * and waits one fault's cost L each, so it is stalled while w·m·L > 1. A writer as fast as the
   * lab's (6.8 M pages/s) stalls until nearly its whole working set has crossed; a paced one
   * (20,000 pages/s) runs again once fewer than one in w·L of its pages is missing.
   */
  faultUs: number;
  postcopyQueueBytes: number;
}

export const DEFAULT_PARAMS: ModelParams = {
  channels: 1,
  channelBps: 1.25e9,
  scanBytesPerS: 20e9,
  syncMsPerGiB: 1,
  syncFixedMs: 0.2,
  switchCostMs: 40,
  switchMsPerExtraChannel: 0,
  switchMsPerVcpu: 0.1,
  vcpus: 1,
  pageBytes: 4096,
  dirtyLogFaultUs: 0,
  faultUs: 50,
  postcopyQueueBytes: 256 * 1024,
};

/** Milliseconds one bitmap sync of `ramBytes` costs. */
export function syncMs(p: ModelParams, ramBytes: number): number {
  return p.syncFixedMs + (p.syncMsPerGiB * ramBytes) / 2 ** 30;
}

/** What the migration's streams can carry together, bytes/s (before the link). */
export function streamCapBps(p: ModelParams): number {
  return p.channels * p.channelBps;
}

/** Guest RAM examined per second for zero pages: the main thread, or every multifd channel. */
export function scanRate(p: ModelParams): number {
  return p.channels > 1 ? p.channels * p.scanBytesPerS : p.scanBytesPerS;
}

/** Milliseconds one post-copy page fault blocks a vCPU when the streams get `rateBps` and the round trip is `rttMs`. */
export function faultMs(p: ModelParams, rttMs: number, rateBps: number): number {
  if (!(rateBps > 0)) return Infinity;
  return rttMs + p.faultUs / 1000 + ((p.pageBytes + 8 + p.postcopyQueueBytes) / rateBps) * 1000;
}
