{
  "targets": [
    {
      "target_name": "cove_netns",
      "sources": ["netns.c", "seqpacket.c", "xattr.c", "nft.c", "mount.c", "spawn.c", "memory.cc"],
      "libraries": ["-ldl", "-lpthread"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "cove-logger",
      "type": "executable",
      "sources": ["cove-logger.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "ldflags": ["-static"]
    }
  ]
}
