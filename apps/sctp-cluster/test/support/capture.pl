#!/usr/bin/perl
# A packet capture of the loopback interface without tcpdump (an AF_PACKET socket: root).
# Prints one line per UDP datagram whose source or destination port is one of ARGV, in the
# order they were sent:
#   SRC_IP SRC_PORT DST_IP DST_PORT VTAG CHUNKS
# VTAG is the SCTP common header's verification tag (RFC 6951: SCTP right after the UDP
# header); CHUNKS the chunk types, comma separated, with the field the tests read:
# DATA as 0:TSN, INIT as 1:INITIAL_TSN, SACK as 3:CUMULATIVE_TSN_ACK.
use strict;
use warnings;
my %ports = map { $_ => 1 } @ARGV;
my ($AF_PACKET, $SOCK_RAW, $ETH_P_ALL, $PACKET_OUTGOING) = (17, 3, 0x0003, 4);
my ($SOL_SOCKET, $SO_RCVBUFFORCE) = (1, 33);
open(my $f, '<', '/sys/class/net/lo/ifindex') or die "no lo: $!\n";
my $ifindex = <$f>;
close $f;
chomp $ifindex;
socket(my $s, $AF_PACKET, $SOCK_RAW, unpack('n', pack('v', $ETH_P_ALL))) or die "socket: $!\n";
setsockopt($s, $SOL_SOCKET, $SO_RCVBUFFORCE, pack('i', 64 * 1024 * 1024));
bind($s, pack('S n I S C C a8', $AF_PACKET, $ETH_P_ALL, $ifindex, 0, 0, 0, '')) or die "bind: $!\n";
$| = 1;
print STDERR "listening on lo\n";
while (1) {
  my $from = recv($s, my $frame, 65_600, 0);
  last unless defined $from;
  # Loopback frames pass twice, going out and coming in: keep the one going out. It is
  # queued here by the sender's own system call, so the order of the lines is the order in
  # which the datagrams were sent; the incoming copy passes a per-CPU backlog first, and two
  # datagrams sent from two CPUs may come in the other way round.
  next unless length($from) >= 11 && unpack('C', substr($from, 10, 1)) == $PACKET_OUTGOING;
  next if length($frame) < 14 + 20 + 8 + 12;
  next unless unpack('n', substr($frame, 12, 2)) == 0x0800;
  my $ip = 14;
  my $ihl = (unpack('C', substr($frame, $ip, 1)) & 0x0f) * 4;
  next unless unpack('C', substr($frame, $ip + 9, 1)) == 17;
  my $udp = $ip + $ihl;
  my ($sport, $dport) = unpack('n n', substr($frame, $udp, 4));
  next unless $ports{$sport} || $ports{$dport};
  my $src = join('.', unpack('C4', substr($frame, $ip + 12, 4)));
  my $dst = join('.', unpack('C4', substr($frame, $ip + 16, 4)));
  my $sctp = $udp + 8;
  next if length($frame) < $sctp + 12;
  my $vtag = unpack('N', substr($frame, $sctp + 4, 4));
  my @chunks;
  my $at = $sctp + 12;
  while ($at + 4 <= length($frame)) {
    my ($type, $flags, $len) = unpack('C C n', substr($frame, $at, 4));
    last if $len < 4;
    my $field = $type == 0 ? 4 : $type == 1 ? 16 : $type == 3 ? 4 : -1;
    push @chunks, $field >= 0 && $at + $field + 4 <= length($frame)
      ? "$type:" . unpack('N', substr($frame, $at + $field, 4)) : $type;
    $at += ($len + 3) & ~3;
  }
  print "$src $sport $dst $dport $vtag " . join(',', @chunks) . "\n";
}
