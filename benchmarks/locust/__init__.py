"""Locust users and workloads for idnode: the pieces ``benchmarks/locustfile.py`` puts together.

``manifest`` reads the seed manifest (which keys exist, under which enterprise prefixes);
``workload`` holds the workload model (operation mix, key popularity, not-found and cross-industry
shares, batch registrations, constant rate) from the command line or a TOML file; ``msgpack_client``
is a blocking msgpack client over TCP and UDP built on ``protocol``; ``users`` are the Locust users
(REST over HTTP, msgpack over TCP, msgpack over UDP, and the same against a recursive node);
``recursive`` says where the recursive node is (flags or ``topology.json``) and merges the seed
manifests of the secondary nodes; ``ladder`` is a step-ladder load shape kept in
its own locustfile so that it applies only when named with ``-f``; ``cpu`` flags a saturated
generator.

The package is named after the tool it serves; inside it, ``import locust`` still means the Locust
package (absolute imports), and ``benchmarks.locust`` means this one.
"""
