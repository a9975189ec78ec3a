"""Signed USB bundles (.cbx): build, verify, install with rollback, and field data on the stick.

Nothing here is replaced by the bundles it installs: the updater runs from the image's own
package, releases live under <root>/releases and are switched by a symlink per kind.
"""
