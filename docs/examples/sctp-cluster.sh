sctp-cluster keygen --out cluster.key   # once; copy it to both nodes (mode 0600)
sctp-cluster node --role secondary --addresses 127.0.0.2,127.0.0.3 --policy every-update --link tcp://127.0.0.3:7000 --status tcp://127.0.0.3:7080 --cluster-key-file cluster.key
sctp-cluster node --role primary   --addresses 127.0.0.2,127.0.0.3 --policy every-update --link tcp://127.0.0.3:7000 --status tcp://127.0.0.2:7080 --cluster-key-file cluster.key
sctp-cluster status --status tcp://127.0.0.2:7080   # role, link, lag and associations of the primary
