npm install @understudy/port-election effect
