"""Lab actors: namespaces, firewall backends, processes, allocation, clean-up, user and mount
namespaces, the powerfs disk. Everything here touches the kernel."""
