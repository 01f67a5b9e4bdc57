# muster agent configuration (HCL; JSON files in this directory are read
# too, in lexical order). Keys and meanings are Consul's.
#
# This default runs one server that elects itself, with its data in
# /var/lib/muster. For a cluster of N servers set bootstrap_expect = N and
# list the other servers in retry_join; for a client agent set
# server = false, drop bootstrap_expect and list the servers in retry_join.

data_dir = "/var/lib/muster"
server = true
bootstrap_expect = 1

# Where the HTTP API and DNS listen (127.0.0.1: this host only).
client_addr = "127.0.0.1"

# Gossip and server RPC bind to every interface and advertise the host's one
# private IPv4 address; with several, name the one other agents reach:
# bind_addr = "10.0.0.21"

# retry_join = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]

# Gossip encryption: generate a key with `muster keygen`, the same on
# every agent.
# encrypt = "..."
