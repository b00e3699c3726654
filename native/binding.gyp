{
  "targets": [
    {
      "target_name": "cove_netns",
      "sources": ["netns.c", "seqpacket.c", "xattr.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
