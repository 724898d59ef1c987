"""Every program's main, on top of the library: options (flag beats environment beats default),
logging set-up, and the mains: `cli` (sender, receiver, stage, HTTP front), `ctl` (rabbitipc-ctl),
`chat` (rabbitipc-chat), `health` (the probe) and `definitions` (the broker's users and queues)."""
