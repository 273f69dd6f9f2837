"""The menus: engine, agent and subscriber menu machines, shortcuts, session stores."""
