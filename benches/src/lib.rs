//! Shared helpers of Tidemark's criterion benchmarks (`benches/benches/*.rs`).
//!
//! The benchmarks measure the real code paths (decoder → Arrow change batches, encoders, sinks)
//! on inputs built in memory or captured from real servers, never a simplified copy. Timings on
//! the project's 2-core machines are noisy: `docs/benchmarks.md` reports ratios from one run and,
//! for decoders, instruction counts from valgrind's callgrind beside criterion's times.
