"""Setting ratui up without editing TOML by hand: config files written safely
(:mod:`.files`), tokens (:mod:`.tokens`), server and client configs generated from a few
answers (:mod:`.generate`), pairing codes that carry a server's connection details to the
client (:mod:`.pairing`), a check that a client config really authenticates
(:mod:`.probe`), and the ``ratui init`` / ``ratui pair`` commands (:mod:`.commands`).

Nothing here imports Textual: the terminal wizards and the command line share it.
"""
