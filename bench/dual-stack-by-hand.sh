#!/bin/bash
# The hand measurement of bench/README.md ("IPv6 through dual-stack nodes"): two dual-stack nodes
# and two pods in namespaces named after this shell's pid (deleted on exit, also on failure), then
#   bench/dual-stack-by-hand.sh ours     our two nodes (vxlan, NativeAOT binary from artifacts/aot)
#   bench/dual-stack-by-hand.sh kernel   kernel flannel.1 + flannel-v6.1 programmed as flanneld does
# ping6 between the pods and one 10 s iperf3 TCP stream over IPv6 and over IPv4. Needs root, iproute2, iperf3.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
DP="${DP:-$root/artifacts/aot/dataplane}"
work=$(mktemp -d /tmp/dataplane-dual-stack-XXXXXX)
id=ss$$
S=${id}s; N1=${id}n1; N2=${id}n2; P1=${id}p1; P2=${id}p2
cleanup() { pkill -f "subnet-file $work/$id" 2>/dev/null; sleep 1; for n in $P1 $P2 $N1 $N2 $S; do ip netns del $n 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
for n in $S $N1 $N2 $P1 $P2; do ip netns add $n; ip -n $n link set lo up; done
for n in $N1 $N2 $P1 $P2; do ip netns exec $n sh -c 'echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad'; done
ip -n $S link add br0 type bridge; ip -n $S link set br0 up
for i in 1 2; do
  N=${id}n$i; P=${id}p$i
  ip -n $N link add eth0 type veth peer name s$i netns $S
  ip -n $N addr add 192.0.2.$i/24 dev eth0; ip -n $N addr add 2001:db8:2::$i/64 dev eth0 nodad; ip -n $N link set eth0 up
  ip -n $S link set s$i master br0; ip -n $S link set s$i up
  ip netns exec $N sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'
  ip -n $N link add pod0 type veth peer name eth0 netns $P
  ip -n $N addr add 10.244.$i.1/24 dev pod0; ip -n $N addr add 2001:db8:244:$i::1/64 dev pod0 nodad; ip -n $N link set pod0 up
  ip -n $P addr add 10.244.$i.2/24 dev eth0; ip -n $P addr add 2001:db8:244:$i::2/64 dev eth0 nodad; ip -n $P link set eth0 up
  ip -n $P route add default via 10.244.$i.1; ip -n $P -6 route add default via 2001:db8:244:$i::1
done
cat > $work/cluster.json <<'J'
{"config": {"Network": "10.244.0.0/16", "SubnetLen": 24, "EnableIPv6": true, "IPv6Network": "2001:db8:244::/48", "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan", "VNI": 1}},
 "subnets": {
  "10.244.1.0-24&2001:db8:244:1::-64": {"PublicIP": "192.0.2.1", "PublicIPv6": "2001:db8:2::1", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:5e:00:00:01"}, "BackendV6Data": {"VNI": 1, "VtepMAC": "0e:00:5e:06:00:01"}},
  "10.244.2.0-24&2001:db8:244:2::-64": {"PublicIP": "192.0.2.2", "PublicIPv6": "2001:db8:2::2", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:5e:00:00:02"}, "BackendV6Data": {"VNI": 1, "VtepMAC": "0e:00:5e:06:00:02"}}}}
J
MODE=${1:-ours}
if [ "$MODE" = ours ]; then
  for i in 1 2; do
    ip netns exec ${id}n$i $DP run --leases $work/cluster.json --public-ip 192.0.2.$i --subnet-file $work/$id-n$i.env --control-socket $work/$id-n$i.sock > $work/node$i.log 2>&1 &
  done
  for t in $(seq 1 100); do grep -q Ready $work/node1.log && grep -q Ready $work/node2.log && break; sleep 0.1; done
  echo "--- node 1 log"; cat $work/node1.log
  echo "--- node 1 subnet.env"; cat $work/$id-n1.env
  echo "--- node 1 ip -6 route / addr"; ip -n $N1 -6 route show dev flannel.1; ip -n $N1 -6 addr show dev flannel.1 | grep inet6
else
  for i in 1 2; do
    N=${id}n$i; o=$((3-i))
    ip -n $N link add flannel.1 type vxlan id 1 local 192.0.2.$i dev eth0 dstport 8472 nolearning; ip -n $N link set flannel.1 address 0e:00:5e:00:00:0$i mtu 1450
    ip -n $N addr add 10.244.$i.0/32 dev flannel.1; ip -n $N link set flannel.1 up
    ip -n $N neigh replace 10.244.$o.0 lladdr 0e:00:5e:00:00:0$o dev flannel.1 nud permanent
    bridge -n $N fdb replace 0e:00:5e:00:00:0$o dev flannel.1 dst 192.0.2.$o self permanent
    ip -n $N route replace 10.244.$o.0/24 via 10.244.$o.0 dev flannel.1 onlink
    ip -n $N link add flannel-v6.1 type vxlan id 1 local 2001:db8:2::$i dev eth0 dstport 8472 nolearning; ip -n $N link set flannel-v6.1 address 0e:00:5e:06:00:0$i
    ip -n $N -6 addr add 2001:db8:244:$i::/128 dev flannel-v6.1 nodad; ip -n $N link set flannel-v6.1 up
    ip -n $N -6 neigh replace 2001:db8:244:$o:: lladdr 0e:00:5e:06:00:0$o dev flannel-v6.1 nud permanent
    bridge -n $N fdb replace 0e:00:5e:06:00:0$o dev flannel-v6.1 dst 2001:db8:2::$o self permanent
    ip -n $N -6 route replace 2001:db8:244:$o::/64 via 2001:db8:244:$o:: dev flannel-v6.1 onlink
  done
fi
echo "--- ping6 pod1 -> pod2"; ip netns exec $P1 ping -c 3 -i 0.2 2001:db8:244:2::2 | tail -3
ip netns exec $P2 timeout 40 iperf3 -s -1 >/dev/null 2>&1 &
sleep 0.5
for fam in 6 4; do
  target=$([ $fam = 6 ] && echo 2001:db8:244:2::2 || echo 10.244.2.2)
  ip netns exec $P2 timeout 40 iperf3 -s -1 >/dev/null 2>&1 &
  sleep 0.5
  echo "--- iperf3 TCP IPv$fam, 1 stream, 10 s ($MODE)"; ip netns exec $P1 timeout 30 iperf3 -c $target -t 10 -f g | grep -E "sender|receiver"
  sleep 1
done
if [ "$MODE" = ours ]; then kill %1 %2 2>/dev/null; pkill -INT -f "subnet-file $work/$id" ; sleep 2; echo "--- node 1 stop"; tail -4 $work/node1.log; fi
