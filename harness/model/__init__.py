"""Pure model: topology and grudges, histories, the checker and its model, the nemesis schedule,
the status-to-outcome mapping. No processes, no sockets, no kernel."""
