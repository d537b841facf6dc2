/* kbr_version.h - the release; debian/changelog names the same version. */
#ifndef KBR_VERSION_H
#define KBR_VERSION_H

#define KBR_VERSION "0.9.0"

#endif
