# The Debian package: `cpack -G DEB` in a build tree configured with
# -DCMAKE_INSTALL_PREFIX=/usr (tests/package/build-deb.sh does both) makes
# napsync_VERSION_ARCH.deb from the install() rules of CMakeLists.txt: the
# daemon, the CLI, libnapsync (shared, with its soname, and static), its
# header and napsync.pc, the migrations, the systemd unit, the example
# configuration as the conffile /etc/napsync/napsyncd.conf, and the
# maintainer scripts of deploy/debian/ (the napsync system user). See
# docs/deploy.md.

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME napsync)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR napsync)
set(NS_PACKAGE_MAINTAINER "napsync maintainers <maintainers@users.noreply.h-seed-4b49cb0e.example>"
    CACHE STRING "The Maintainer field of the Debian package")
set(CPACK_PACKAGE_CONTACT "${NS_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "WPS action-plan sync service: napsyncd, libnapsync and the napsync CLI")
# The extended description, after the summary line CPack puts first; CPack
# indents each line and turns an empty one into " .".
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "napsync keeps Women, Peace and Security National Action Plans in one shared,
versioned copy that many organisations edit at once, offline when the line
drops. napsyncd is the server: a daemon that speaks a protobuf protocol over
mutual TLS and keeps its state in PostgreSQL, run by systemd as the napsync
system user. libnapsync and the napsync command line are the client, with a
local SQLite replica and an outbox.

Configure /etc/napsync/napsyncd.conf and the TLS files, then
systemctl enable --now napsyncd.")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # napsync_VERSION_ARCH.deb
# The files keep the prefix the build was configured with: napsyncd's
# default sql_dir and napsync.pc name it.
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)

# Depends: the shared libraries the binaries link, as dpkg-shlibdeps finds
# them, and adduser for postinst.
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)
find_program(NS_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(NS_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  # The CLI links libnapsync.so.0 from this very package.
  set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS "${CMAKE_BINARY_DIR}")
else()
  message(STATUS "dpkg-shlibdeps not found (package dpkg-dev): the .deb will depend on adduser only")
endif()

# Files under /etc that dpkg keeps an administrator's edits of.
file(CONFIGURE OUTPUT "${CMAKE_BINARY_DIR}/debian/conffiles" CONTENT "${NS_CONF_FILE}\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_BINARY_DIR}/debian/conffiles;${CMAKE_SOURCE_DIR}/deploy/debian/postinst;${CMAKE_SOURCE_DIR}/deploy/debian/prerm;${CMAKE_SOURCE_DIR}/deploy/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

include(CPack)
