# Every benchmark, then the plots redrawn from their figures:
npm run bench
# Only the benchmarks the plots are drawn from, then the plots:
npm run bench -w @understudy/docs
