{
  "targets": [
    {
      "target_name": "cove_netns",
      "sources": ["netns.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
