"""Processing nodes of imuflow graphs: sync, filter, observer, orientation, fk, viewer, recorder."""
