# Every package's benchmark, then the plots redrawn from the figures they print:
npm run bench
# Only the benchmarks the plots are drawn from, then the plots:
npm run bench -w @understudy/docs
